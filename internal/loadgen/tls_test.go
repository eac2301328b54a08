package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Options.TLS configures the connections to https endpoints: with the
// server's CA the load runs without errors; without it every request fails
// its handshake, counted as errors.
func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"key":"k","mod_index":1,"version":1}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	o := Options{Endpoints: []string{srv.URL}, Workload: Put, Connections: 2, Keys: 10, Duration: 200 * time.Millisecond}

	o.TLS = &tls.Config{RootCAs: roots}
	checkFigures(t, runLoad(t, o))

	o.TLS = nil
	res, err := generator(t, o).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 0 || len(res.Errors) == 0 || !strings.Contains(res.Errors[0].Example, "certificate") {
		t.Errorf("without the CA: ops %d, errors %+v; want only certificate errors", res.Ops, res.Errors)
	}
}
