// Package all registers every kernel backend this build contains. Import it for its side
// effect: import _ "github.com/lmrun/lmrun/backends/all".
package all

import (
	_ "github.com/lmrun/lmrun/backends"        // the generic reference backend
	_ "github.com/lmrun/lmrun/backends/avx2"   // amd64 AVX2+FMA (empty elsewhere)
	_ "github.com/lmrun/lmrun/backends/avx512" // amd64 AVX-512 (listed, unavailable elsewhere)
	_ "github.com/lmrun/lmrun/backends/neon"   // arm64 NEON (empty elsewhere)
)
