package fakeconsul

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"
)

const (
	defaultCheckTimeout = 10 * time.Second // Consul's default for HTTP and TCP checks
	checkOutputMax      = 4 * 1024         // Consul keeps at most 4k of a check's output
)

// runCheck runs one check like the Consul agent: first at a random point
// within the interval, then every interval, until ctx ends or the check is
// gone.
func (s *Server) runCheck(ctx context.Context, c *check) {
	interval := max(c.def.Interval, s.opts.MinCheckInterval)
	timeout := c.def.Timeout
	if timeout <= 0 {
		timeout = defaultCheckTimeout
	}
	t := time.NewTimer(rand.N(interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var status, output string
		if c.def.TCP != "" {
			status, output = probeTCP(ctx, c.def.TCP, timeout)
		} else {
			status, output = s.probeHTTP(ctx, c.def, timeout)
		}
		if ctx.Err() != nil || !s.setCheckResult(c, status, output) {
			return
		}
		t.Reset(interval)
	}
}

// probeHTTP is Consul's HTTP check: 2xx passing, 429 warning, anything else
// critical.
func (s *Server) probeHTTP(ctx context.Context, def checkDef, timeout time.Duration) (status, output string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := def.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, def.HTTP, strings.NewReader(def.Body))
	if err != nil {
		return statusCritical, err.Error()
	}
	for k, vs := range def.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "Consul Health Check")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/plain, text/*, */*")
	}
	resp, err := s.checkc.Do(req)
	if err != nil {
		return statusCritical, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, checkOutputMax))
	_, _ = io.Copy(io.Discard, resp.Body)
	output = fmt.Sprintf("HTTP %s %s: %s Output: %s", method, def.HTTP, resp.Status, body)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return statusPassing, output
	case resp.StatusCode == http.StatusTooManyRequests:
		return statusWarning, output
	default:
		return statusCritical, output
	}
}

// probeTCP is Consul's TCP check: passing when a connection opens.
func probeTCP(ctx context.Context, addr string, timeout time.Duration) (status, output string) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return statusCritical, err.Error()
	}
	_ = conn.Close()
	return statusPassing, fmt.Sprintf("TCP connect %s: Success", addr)
}
