// Package jsclient holds the browser client, ssekafka.js, for the edge to
// serve (the demo page uses it); its tests run it under node.
package jsclient

import _ "embed"

// Module is ssekafka.js, an ES module.
//
//go:embed ssekafka.js
var Module []byte
