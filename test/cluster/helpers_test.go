package cluster_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

// quickLeases makes lost nodes show within a second.
func quickLeases(cfg *config.Config) {
	cfg.ClusterLeaseInterval = 100 * time.Millisecond
	cfg.ClusterLeaseTimeout = 700 * time.Millisecond
}

// metricValue reads one sample of a node's /metrics (0 if absent).
func metricValue(t *testing.T, s *daemontest.Server, series string) float64 {
	t.Helper()
	res, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return 0
}

// allowPolicy creates a policy allowing actions on topics.
func allowPolicy(t *testing.T, s *daemontest.Server, name string, topics []string, actions ...policy.Action) {
	t.Helper()
	_, err := s.Registry().CreatePolicy(context.Background(), name, "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: actions, Topics: topics},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func unsub(filters ...string) *paho.Unsubscribe { return &paho.Unsubscribe{Topics: filters} }
