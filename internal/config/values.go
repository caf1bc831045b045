package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The value checks below return errors whose text becomes a diagnostic's
// detail, so they say what is wrong and what a valid value looks like.

var (
	// namePattern is what model names and aliases may look like: enough for
	// Hugging Face style names ("Qwen/Qwen3-30B-A3B", "gpt-oss:120b") while
	// keeping them safe in URLs, Redis keys and Nomad job names.
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$`)
	// slotPattern is what a slot name may look like; it ends up in Redis keys
	// and Consul KV paths.
	slotPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// envNamePattern is a portable environment variable name.
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// sizePattern is a number and a unit, as in "40GiB" or "1.5 TB".
	sizePattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) ?([A-Za-z]+)$`)
)

func checkName(s string) error {
	if !namePattern.MatchString(s) {
		return fmt.Errorf("%q is not a valid name: use 1 to 128 letters, digits and . _ - / :, starting with a letter or digit", s)
	}
	return nil
}

func checkSlot(s string) error {
	if !slotPattern.MatchString(s) {
		return fmt.Errorf("%q is not a valid slot name: use 1 to 64 letters, digits and . _ -, starting with a letter or digit", s)
	}
	return nil
}

func checkNonEmpty(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// parseDuration parses a positive Go duration such as "90s" or "15m".
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number with a unit, such as \"90s\", \"15m\" or \"1h\"", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be longer than zero", s)
	}
	return d, nil
}

// parseSeconds parses the whole, positive number of seconds the *_SEC
// environment variables carry.
func parseSeconds(s string) (time.Duration, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive whole number of seconds", s)
	}
	if n > int64(math.MaxInt64/time.Second) {
		return 0, fmt.Errorf("%q seconds is too long", s)
	}
	return time.Duration(n) * time.Second, nil
}

// sizeUnits are the units parseSize accepts: binary (KiB = 1024 bytes) and
// decimal (KB = 1000 bytes), spelled exactly so that "GB" and "GiB" cannot be
// confused.
var sizeUnits = map[string]int64{
	"B":   1,
	"KB":  1000,
	"MB":  1000 * 1000,
	"GB":  1000 * 1000 * 1000,
	"TB":  1000 * 1000 * 1000 * 1000,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

// parseSize parses a positive memory size such as "40GiB" or "1.5TB" into
// bytes, rounding fractions of a byte down.
func parseSize(s string) (int64, error) {
	const hint = `write a number and a unit (B, KiB, MiB, GiB, TiB, or decimal KB, MB, GB, TB), such as "40GiB"`
	m := sizePattern.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a memory size: %s", s, hint)
	}
	unit, ok := sizeUnits[m[2]]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q: %s", s, m[2], hint)
	}
	n, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("%q is not a memory size: %s", s, hint)
	}
	n.Mul(n, new(big.Rat).SetInt64(unit))
	bytes := new(big.Int).Quo(n.Num(), n.Denom())
	if !bytes.IsInt64() {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if bytes.Sign() <= 0 {
		return 0, fmt.Errorf("%q must be larger than zero", s)
	}
	return bytes.Int64(), nil
}

// checkListen accepts host:port with a numeric port; port 0 (pick a free
// port) is allowed so tests can listen anywhere.
func checkListen(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port, such as \"127.0.0.1:8000\" or \"0.0.0.0:8000\"", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has port %q; want a number from 0 to 65535", s, port)
	}
	return nil
}

// checkRedisURL accepts the URLs go-redis understands: redis://, rediss://
// and unix://. The empty string (embedded Redis in dev mode) is checked by
// the caller, not here.
func checkRedisURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL such as \"redis://127.0.0.1:6379/0\"", s)
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return fmt.Errorf("%q names no host; want a URL such as \"redis://127.0.0.1:6379/0\"", s)
		}
	case "unix":
		if u.Path == "" {
			return fmt.Errorf("%q names no socket path; want a URL such as \"unix:///run/redis.sock\"", s)
		}
	default:
		return fmt.Errorf("%q has scheme %q; want redis://, rediss:// or unix://", s, u.Scheme)
	}
	return nil
}

// checkAgentURL accepts the address of a Nomad agent: http://, https:// or
// unix://.
func checkAgentURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || !strings.Contains(s, "://") {
		return fmt.Errorf("%q is not a URL such as \"http://127.0.0.1:4646\"", s)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("%q names no host", s)
		}
	case "unix":
		if u.Path == "" {
			return fmt.Errorf("%q names no socket path", s)
		}
	default:
		return fmt.Errorf("%q has scheme %q; want http://, https:// or unix://", s, u.Scheme)
	}
	return nil
}

// checkConsulAddress accepts what the Consul client accepts in
// CONSUL_HTTP_ADDR: a URL as for Nomad, or a bare host:port.
func checkConsulAddress(s string) error {
	if strings.Contains(s, "://") {
		return checkAgentURL(s)
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("%q is neither a URL such as \"http://127.0.0.1:8500\" nor host:port", s)
	}
	return nil
}

// splitKeys turns a comma-separated key list from the environment into
// secrets, trimming spaces and dropping empty entries.
func splitKeys(s string) []Secret {
	var keys []Secret
	for k := range strings.SplitSeq(s, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, Secret(k))
		}
	}
	return keys
}
