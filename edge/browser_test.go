package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ssekafka/ssekafka/edge"
)

// page is a cross-origin page: it streams /tasks from the edge with a
// token in the query, and answers event:challenge with the fresh token by
// POSTing the headers the challenge lists (a CORS preflight first).
const page = `<!doctype html><script>
window.got = []; window.opens = 0; window.renewals = [];
const es = new EventSource(%q);
window.es = es;
es.onopen = () => window.opens++;
es.onmessage = (ev) => window.got.push(ev.data);
es.addEventListener('challenge', async (ev) => {
  const c = JSON.parse(ev.data);
  const headers = {...c.headers, authorization: 'Bearer ' + %q};
  try {
    const r = await fetch(%q, {method: c.method, headers});
    window.renewals.push(r.status);
  } catch (e) { window.renewals.push(String(e)); }
});
</script>`

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// startChromium starts the headless Chromium at bin for the test (a minute
// at most), with extra options after the defaults, and returns a function
// that opens a tab at a URL.
func startChromium(t *testing.T, bin string, extra ...chromedp.ExecAllocatorOption) (open func(url string) context.Context) {
	t.Helper()
	opts := append(append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true)), extra...)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := context.WithTimeout(actx, time.Minute)
	t.Cleanup(cancel)
	bctx, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	open = func(url string) context.Context {
		tab, cancel := chromedp.NewContext(bctx)
		t.Cleanup(cancel)
		if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
		return tab
	}
	return open
}

// In Chromium, a page of an allowed origin streams and renews its stream
// across the token's expiry (preflight, POST, same connection); a page of
// another origin is refused by the browser itself.
func TestBrowserCrossOriginStreamAndRenewal(t *testing.T) {
	bin := chromium(t)
	var html atomic.Value // the page, set once the edge's address is known
	serve := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, html.Load()) })
	allowed, refused := httptest.NewServer(serve), httptest.NewServer(serve) // two origins
	t.Cleanup(allowed.Close)
	t.Cleanup(refused.Close)

	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: guardConfig(t, j, 2*time.Second, &edge.CORS{Origins: []string{allowed.URL}})})
	s.produce("tasks", rec(0, "k", "before"))
	fresh := token(t, "k1", "alice", time.Now().Add(time.Hour), "read")
	html.Store(fmt.Sprintf(page, s.url+"/tasks?access_token="+fresh, fresh, s.url+"/tasks"))

	open := startChromium(t, bin)

	other := open(refused.URL)
	eventually(t, 10*time.Second, "the refused origin's EventSource to close", func() bool {
		return eval[int](t, other, "window.es.readyState") == 2 // CLOSED: blocked by CORS policy
	})
	if got := eval[[]string](t, other, "window.got"); len(got) != 0 {
		t.Fatalf("the refused origin read %q", got)
	}

	// The token is made now, the browser being up: it must outlive the page's start.
	exp := time.Unix(time.Now().Add(6*time.Second).Unix(), 0)
	html.Store(fmt.Sprintf(page, s.url+"/tasks?access_token="+token(t, "k1", "alice", exp, "read"), fresh, s.url+"/tasks"))
	tab := open(allowed.URL)
	eventually(t, 10*time.Second, "the allowed origin's first record", func() bool {
		got := eval[[]string](t, tab, "window.got")
		return len(got) == 1 && got[0] == "before"
	})
	eventually(t, 10*time.Second, "the page's renewal", func() bool {
		renewals := eval[[]any](t, tab, "window.renewals")
		if len(renewals) > 0 && renewals[0] != float64(204) {
			t.Fatalf("renewal from the page: %v", renewals)
		}
		return len(renewals) == 1
	})
	time.Sleep(time.Until(exp.Add(500 * time.Millisecond))) // past the first token's expiry: a time, not a state
	s.produce("tasks", rec(0, "k", "after"))
	eventually(t, 10*time.Second, "the record after the first token's expiry", func() bool {
		got := eval[[]string](t, tab, "window.got")
		return len(got) == 2 && got[1] == "after"
	})
	if opens := eval[int](t, tab, "window.opens"); opens != 1 {
		t.Fatalf("the stream opened %d times, want once (no reconnect)", opens)
	}
}

func eval[T any](t *testing.T, tab context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
