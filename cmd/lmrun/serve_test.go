package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServe starts lmrun serve on a free port with a ChatML template and an API key,
// asks it for a chat completion, then stops it with SIGTERM: it exits 0.
func TestServe(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM to send")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", model)
	tmpl := filepath.Join(dir, "chatml.jinja")
	src := "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	if err := os.WriteFile(tmpl, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "serve", "-m", model, "--chat-template", tmpl, "--port", "0", "-t", "1", "--api-key", "k", "--timeout", "60")
	cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := bufio.NewReader(stderr)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%v: %q", err, line)
	}
	addr := regexp.MustCompile(`http://[^ ]+/v1`).FindString(line)
	if addr == "" {
		t.Fatalf("no address in %q", line)
	}
	go io.Copy(io.Discard, r)
	req, _ := http.NewRequest(http.MethodPost, addr+"/chat/completions",
		strings.NewReader(`{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}`))
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(body.Choices) != 1 {
		t.Fatalf("status %d, %+v, %v", resp.StatusCode, body, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("lmrun serve did not exit after SIGTERM")
	}
}
