package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestContentionProfilesNeedPprofListener(t *testing.T) {
	for _, args := range [][]string{{"--pprof-mutex", "5"}, {"--pprof-block", "10000"}} {
		err := runEdge(args)
		if err == nil || !strings.Contains(err.Error(), "need --pprof ADDR") {
			t.Errorf("edge %v: got %v, want the refusal naming --pprof", args, err)
		}
	}
	err := runEdge([]string{"--pprof", "127.0.0.1:0", "--pprof-mutex", "-1"})
	if err == nil || !strings.Contains(err.Error(), "--pprof-mutex") {
		t.Errorf("negative --pprof-mutex: got %v, want a refusal naming it", err)
	}
}

func TestContentionProfilesSetTheRuntimeRates(t *testing.T) {
	defer runtime.SetMutexProfileFraction(runtime.SetMutexProfileFraction(-1))
	defer runtime.SetBlockProfileRate(0)
	if err := setContentionProfiles("127.0.0.1:0", 7, 1000); err != nil {
		t.Fatal(err)
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 7 {
		t.Errorf("mutex profile fraction %d, want 7", got)
	}
}
