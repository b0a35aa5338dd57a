package pgdb

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, in := range []string{
		"postgres://mote:s3cret@db:5432/mote",
		"postgres://mote:s3cr%40et@db/mote",
		"postgres://mote@db/mote?password=s3cret&sslmode=disable",
	} {
		got := Redact(in)
		if strings.Contains(got, "s3cr") || !strings.Contains(got, "db") {
			t.Errorf("Redact(%q) = %q; want the host without the password", in, got)
		}
	}
}
