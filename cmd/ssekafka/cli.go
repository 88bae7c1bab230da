package main

import "strings"

// flagParseError reports whether err is one the flag package returns from
// Parse after printing it and the usage (so it is not printed again).
func flagParseError(err error) bool {
	if err == nil {
		return false
	}
	for _, p := range []string{"flag provided but not defined: ", "bad flag syntax: ", "flag needs an argument: ", "invalid value ", "invalid boolean value ", "invalid boolean flag "} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}
