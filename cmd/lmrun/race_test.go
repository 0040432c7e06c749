//go:build race

package main

// raceEnabled: the race runtime's shadow memory does not fit a data-segment limit.
const raceEnabled = true
