package accept

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// One request parser. Serve reads every connection's first header
// itself, so that what it reads and what net/http would read must agree:
// the header ends at its first empty line, CRLF or bare LF (net/textproto
// takes both); a request net/http's server would refuse (no Host on
// HTTP/1.1, two Hosts, a malformed Host, an invalid header name or value)
// is handed to net/http, which answers it; and the bounds below apply to
// every connection, streams and health alike.

// Request bounds, answered on every path before any other work.
const (
	// MaxPathBytes bounds a request's target, its path and query as sent,
	// less the values of lastEventId parameters: route parameters come
	// from the path. A longer one is 414. A lastEventId, as a Last-Event-ID
	// header, may be longer (a position of many partitions), within
	// MaxHeaderBytes.
	MaxPathBytes = 8 << 10
	// MaxHeaderLines bounds a request's header fields; more are 431.
	MaxHeaderLines = 100
)

// headerEndIndex returns the length of the header in buf up to and
// including its empty line, or -1 if buf holds no complete header.
func headerEndIndex(buf []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		switch {
		case i < len(buf) && buf[i] == '\n':
			return i + 1
		case i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n':
			return i + 2
		case i >= len(buf) || i+1 >= len(buf) && buf[i] == '\r':
			return -1 // the next line has not arrived yet
		}
	}
}

// refusedByNetHTTP reports whether net/http's server would refuse req, a
// request that http.ReadRequest (laxer than the server) accepted: such a
// connection is handed to net/http to be answered in its words.
// head is the header as it arrived (http.ReadRequest drops Host fields).
func refusedByNetHTTP(req *http.Request, head []byte) bool {
	hosts := hostFields(head)
	switch {
	case hasFoldedLine(head):
		return true // obs-fold: textproto joins the lines, and its Host rules apply to the result
	case len(req.Header["Expect"]) > 0:
		return true // net/http answers 100 Continue or 417

	case req.ProtoAtLeast(1, 1) && len(hosts) == 0 && req.Method != http.MethodConnect:
		return true
	case len(hosts) > 1:
		return true
	case len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]):
		return true
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return true
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return true
			}
		}
	}
	return false
}

// hostFields returns the values of head's Host fields.
func hostFields(head []byte) []string {
	var hosts []string
	_, rest, _ := bytes.Cut(head, []byte("\n")) // past the request line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("Host")) {
			hosts = append(hosts, string(bytes.Trim(value, " \t\r"))) // textproto trims SP and HT only
		}
	}
	return hosts
}

// hasFoldedLine reports whether a header line of head continues the one
// before it (starts with SP or HT).
func hasFoldedLine(head []byte) bool {
	return bytes.Contains(head, []byte("\n ")) || bytes.Contains(head, []byte("\n\t"))
}

// outOfBounds returns the status and reason for a request past the bounds,
// or 0. head is its header as it arrived.
func outOfBounds(req *http.Request, head []byte) (int, string) {
	if len(req.URL.EscapedPath()) > MaxPathBytes || len(req.RequestURI)-lastEventIDParamBytes(req.RequestURI) > MaxPathBytes {
		return http.StatusRequestURITooLong, "request path with its query longer than " + strconv.Itoa(MaxPathBytes) + " bytes (a lastEventId aside)\n"
	}
	if len(head)-longHeaderBytes(head) > OrdinaryHeaderBytes {
		return http.StatusRequestHeaderFieldsTooLarge, "request header longer than " + strconv.Itoa(OrdinaryHeaderBytes) + " bytes (a Last-Event-ID aside)\n"
	}
	// Lines less the request line and the empty line.
	if bytes.Count(head, []byte("\n"))-2 > MaxHeaderLines {
		return http.StatusRequestHeaderFieldsTooLarge, "more than " + strconv.Itoa(MaxHeaderLines) + " header fields\n"
	}
	return 0, ""
}

// answerAndClose writes a plain-text answer and closes conn.
func answerAndClose(conn net.Conn, status int, reason string) {
	_, _ = io.WriteString(conn, "HTTP/1.1 "+strconv.Itoa(status)+" "+http.StatusText(status)+
		"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "+strconv.Itoa(len(reason))+
		"\r\nConnection: close\r\n\r\n"+reason)
	closeAfterAnswer(conn)
}

// closeAfterAnswer closes conn after an answer to a request whose rest may
// still arrive: closing with unread data sends a RST, which can destroy the
// answer before the client reads it. So, as net/http does, the write side
// is closed first and what the client still sends is read and dropped, for
// at most half a second and 256 KiB.
func closeAfterAnswer(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.CopyN(io.Discard, conn, 256<<10)
	}
	_ = conn.Close()
}

// StatusLineProto is the HTTP version of the answers to req: HTTP/1.1, or
// HTTP/1.0 to a 1.0 request (a later 1.x is answered as 1.1, RFC 9110 2.5).
func StatusLineProto(req *http.Request) string {
	if req.ProtoAtLeast(1, 1) {
		return "HTTP/1.1"
	}
	return "HTTP/1.0"
}

// longHeaderBytes is how many bytes of buf, a request header or its start,
// are values that get the long budget (MaxHeaderBytes): those of
// Last-Event-ID fields and of lastEventId parameters of the request line,
// the last line counted as far as it has arrived.
func longHeaderBytes(buf []byte) int {
	n := 0
	for first := true; len(buf) > 0; first = false {
		line, rest, _ := bytes.Cut(buf, []byte("\n"))
		buf = rest
		if first {
			n += lastEventIDParamBytes(string(line))
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("Last-Event-ID")) {
			n += len(value)
		}
	}
	return n
}

// lastEventIDParamBytes is how many bytes of s, a request target or a
// request line, are values of lastEventId query parameters.
func lastEventIDParamBytes(s string) int {
	const param = "lastEventId="
	n := 0
	for i := strings.IndexByte(s, '?'); i >= 0 && i < len(s); {
		rest := s[i+1:]
		end := strings.IndexAny(rest, "& #\r")
		field := rest
		if end >= 0 {
			field = rest[:end]
		}
		if strings.HasPrefix(field, param) {
			n += len(field) - len(param)
		}
		if end < 0 || rest[end] != '&' {
			break
		}
		i += 1 + end
	}
	return n
}
