package engine

// The engine links no backend itself (its users choose, as database/sql programs choose
// drivers); its tests run on every backend this build has.
import _ "github.com/lmrun/lmrun/backends/all"
