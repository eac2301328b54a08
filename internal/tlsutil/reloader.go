package tlsutil

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// pollInterval is how often a Reloader looks at its files.
const pollInterval = time.Second

// recentWindow: a file modified less than this long ago is read even when
// its size and modification time look unchanged, since a file system with
// coarse timestamps gives a rewrite within the same tick the same time.
const recentWindow = 2 * time.Second

// Reloader serves one certificate/key pair read from two PEM files and
// reloads it when the files change (polled every second: size, modification
// time and a SHA-256 of the content) or on Reload. A pair that fails to load
// or whose key does not match the certificate is logged and the old pair
// kept. It runs one goroutine, which Close stops. Its methods are safe for
// concurrent use; the certificate is swapped atomically, so a handshake
// sees either the old pair or the new one.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	interval          time.Duration

	cur atomic.Pointer[tls.Certificate] // Leaf always set

	mu      sync.Mutex // serializes loads; guards the fields below
	stamps  [2]fileStamp
	content [sha256.Size]byte // of the last pair read, loaded or not

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// fileStamp is what a poll compares before reading a file.
type fileStamp struct {
	size int64
	mod  time.Time
}

// NewReloader loads the pair from certFile and keyFile (PEM; the key
// PKCS#8, PKCS#1 or SEC 1) and starts watching the files. It fails if the
// first pair does not load. logger may be nil (nothing is logged).
func NewReloader(certFile, keyFile string, logger *slog.Logger) (*Reloader, error) {
	return newReloader(certFile, keyFile, logger, pollInterval)
}

func newReloader(certFile, keyFile string, logger *slog.Logger, interval time.Duration) (*Reloader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{
		certFile: certFile,
		keyFile:  keyFile,
		log:      logger,
		interval: interval,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	r.mu.Lock()
	err := r.loadLocked()
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	go r.run()
	return r, nil
}

// GetCertificate returns the current pair; it is tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current()
}

// GetClientCertificate returns the current pair; it is
// tls.Config.GetClientCertificate.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current()
}

func (r *Reloader) current() (*tls.Certificate, error) {
	if c := r.cur.Load(); c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

// Leaf returns the current certificate, parsed. The caller must not modify it.
func (r *Reloader) Leaf() *x509.Certificate {
	if c := r.cur.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// Reload reads both files now and, if they hold a valid matching pair,
// serves it from the next handshake on. On failure it returns the error
// and keeps the current pair (and logs, as a poll does).
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.loadLocked()
	if err != nil {
		r.log.Warn("tls: certificate reload failed; keeping the current one",
			"cert_file", r.certFile, "key_file", r.keyFile, "err", err)
	}
	return err
}

// Close stops the goroutine that watches the files and waits for it to
// return. The Reloader keeps serving its last pair, and Reload still works.
// Close may be called more than once.
func (r *Reloader) Close() {
	r.closeOnce.Do(func() { close(r.stop) })
	<-r.done
}

func (r *Reloader) run() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.poll()
		}
	}
}

// poll reloads the pair if the files changed since they were last read.
func (r *Reloader) poll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	changed := false
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			// Missing for a moment (a rename-based rotation) or gone: keep
			// the pair; the next poll looks again. Log only on the change.
			if r.stamps[i] != (fileStamp{}) {
				r.log.Warn("tls: certificate file unreadable; keeping the current pair", "file", name, "err", err)
				r.stamps[i] = fileStamp{}
			}
			return
		}
		st := fileStamp{size: fi.Size(), mod: fi.ModTime()}
		if st.size != r.stamps[i].size || !st.mod.Equal(r.stamps[i].mod) || now.Sub(st.mod) < recentWindow {
			changed = true
		}
	}
	if !changed {
		return
	}
	certPEM, keyPEM, stamps, err := r.read()
	if err != nil {
		return // vanished between Stat and read: next poll
	}
	sum := contentSum(certPEM, keyPEM)
	r.stamps = stamps
	if sum == r.content {
		return // touched, or rewritten with the same bytes, or the pair already refused
	}
	if err := r.installLocked(certPEM, keyPEM, sum); err != nil {
		r.log.Warn("tls: new certificate files do not load; keeping the current pair until they change again",
			"cert_file", r.certFile, "key_file", r.keyFile, "err", err)
	}
}

// loadLocked reads both files and installs the pair.
func (r *Reloader) loadLocked() error {
	certPEM, keyPEM, stamps, err := r.read()
	if err != nil {
		return err
	}
	r.stamps = stamps
	return r.installLocked(certPEM, keyPEM, contentSum(certPEM, keyPEM))
}

// read reads both files and their stamps (taken before the read: a write
// after it is seen by the next poll).
func (r *Reloader) read() (certPEM, keyPEM []byte, stamps [2]fileStamp, err error) {
	var data [2][]byte
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return nil, nil, stamps, err
		}
		stamps[i] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
		if data[i], err = os.ReadFile(name); err != nil {
			return nil, nil, stamps, err
		}
	}
	return data[0], data[1], stamps, nil
}

// installLocked parses a pair and, if valid, makes it current. The content
// sum is recorded either way, so a refused pair is not retried (nor logged)
// every second until the files change.
func (r *Reloader) installLocked(certPEM, keyPEM []byte, sum [sha256.Size]byte) error {
	r.content = sum
	// tls.X509KeyPair checks that the key matches the certificate; its
	// errors name what is wrong, never the key's bytes.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("%s, %s: %w", r.certFile, r.keyFile, err)
	}
	if pair.Leaf == nil { // filled by X509KeyPair since Go 1.23
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("%s: %w", r.certFile, err)
		}
	}
	old := r.cur.Swap(&pair)
	if old != nil && bytes.Equal(old.Certificate[0], pair.Certificate[0]) {
		return nil // same certificate (a new key file format, say): nothing to tell
	}
	r.log.Info("tls: certificate loaded", "cert_file", r.certFile,
		"subject", pair.Leaf.Subject.String(), "serial", pair.Leaf.SerialNumber.Text(16),
		"not_after", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// contentSum hashes both files' bytes, length-prefixed so that moving bytes
// from one file to the other changes it.
func contentSum(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", len(certPEM))
	h.Write(certPEM)
	h.Write(keyPEM)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
