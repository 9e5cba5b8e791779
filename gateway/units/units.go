// Package units has the value types Tagway's YAML config shares: durations
// that accept a day suffix ("7d") and byte sizes that accept KiB/MiB ("64KiB").
// It imports no other Tagway package.
//
// Both types read YAML scalars and report a bad value with its line and
// column, which cmd/tagway turns into the key's name.
package units

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration that reads "90s", "15m", "48h", "7d" or
// "1d12h" from YAML and text.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses Go durations plus a leading whole-day part ("7d",
// "1d12h"). Negative values are refused.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var days int64
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("invalid duration %q (use s, m, h or d, e.g. 90s, 15m, 7d)", s)
		}
		days, s = n, s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		var err error
		rest, err = time.ParseDuration(s)
		if err != nil || rest < 0 {
			return 0, fmt.Errorf("invalid duration %q (use s, m, h or d, e.g. 90s, 15m, 7d)", s)
		}
	}
	return Duration(time.Duration(days)*24*time.Hour + rest), nil
}

// UnmarshalYAML reads a scalar and reports errors with their position.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		if err == nil {
			err = errors.New("must be a duration such as 90s, 15m or 7d")
		}
		return lineError(n.Line, n.Column, err)
	}
	*d = v
	return nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText writes days when the value is a whole number of days.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(td/(24*time.Hour)), 10) + "d"
	}
	return td.String()
}

// ByteSize is a size in bytes that reads plain integers or "64KiB", "1MiB",
// "2GiB" (also KB/MB/GB as powers of 1000).
type ByteSize int64

// ParseByteSize parses a size.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (e.g. 65536, 64KiB, 1MiB)", s)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML reads a scalar and reports errors with their position.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		if err == nil {
			err = errors.New("must be a size such as 65536, 64KiB or 1MiB")
		}
		return lineError(n.Line, n.Column, err)
	}
	*b = v
	return nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(t []byte) error {
	v, err := ParseByteSize(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText writes the plain number of bytes.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(b), 10)), nil }

// lineError carries the YAML position of a bad value, so the config loader
// can name the key ("line N, column C: …").
func lineError(line, col int, err error) error {
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}
