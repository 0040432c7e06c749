package serve

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, in a registry of its own (several
// servers in one process do not share them).
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec // by endpoint and status code
	prompt       prometheus.Counter
	cachedTokens prometheus.Counter
	generated    prometheus.Counter
	queue        prometheus.Gauge
	active       prometheus.Gauge
	promptRate   prometheus.Gauge
	genRate      prometheus.Gauge
	ttft         prometheus.Histogram
	stepRows     prometheus.Histogram

	// Token rates over windows of at least rateWindow of steps.
	mu                sync.Mutex
	winStart          time.Time
	winPrompt, winGen int
	winBusy           time.Duration
}

const rateWindow = time.Second

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lmrun_requests_total",
		Help: "Requests answered, by endpoint and HTTP status code."}, []string{"endpoint", "code"})
	f(m.requests)
	m.prompt = prometheus.NewCounter(prometheus.CounterOpts{Name: "lmrun_prompt_tokens_total",
		Help: "Prompt tokens processed (fed through the model, not reused from the prompt cache)."})
	f(m.prompt)
	m.cachedTokens = prometheus.NewCounter(prometheus.CounterOpts{Name: "lmrun_prompt_cached_tokens_total",
		Help: "Prompt tokens reused from an earlier sequence's cache."})
	f(m.cachedTokens)
	m.generated = prometheus.NewCounter(prometheus.CounterOpts{Name: "lmrun_generated_tokens_total",
		Help: "Tokens generated."})
	f(m.generated)
	m.queue = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lmrun_queue_depth",
		Help: "Requests waiting for a free sequence slot."})
	f(m.queue)
	m.active = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lmrun_active_sequences",
		Help: "Sequences being processed (reading their prompt or generating)."})
	f(m.active)
	m.promptRate = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lmrun_prompt_tokens_per_second",
		Help: "Prompt tokens processed per second of forward passes, over the last second or more of them."})
	f(m.promptRate)
	m.genRate = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lmrun_generation_tokens_per_second",
		Help: "Tokens generated per second of forward passes, all sequences together, over the last second or more of them."})
	f(m.genRate)
	m.ttft = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lmrun_time_to_first_token_seconds",
		Help:    "Time from a sequence taking its slot to its first token's logits.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)})
	f(m.ttft)
	m.stepRows = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lmrun_batch_tokens",
		Help:    "Tokens per batched forward pass (generating sequences plus prompt chunks).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10)})
	f(m.stepRows)
	return m
}

// step records a forward pass of gen generating sequences and prompt tokens that took d.
func (m *metrics) step(gen, prompt int, d time.Duration) {
	m.prompt.Add(float64(prompt))
	m.stepRows.Observe(float64(gen + prompt))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.winPrompt += prompt
	m.winGen += gen
	m.winBusy += d
	if m.winBusy >= rateWindow {
		s := m.winBusy.Seconds()
		m.promptRate.Set(float64(m.winPrompt) / s)
		m.genRate.Set(float64(m.winGen) / s)
		m.winPrompt, m.winGen, m.winBusy = 0, 0, 0
	}
}

// handler serves the metrics in Prometheus' text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
