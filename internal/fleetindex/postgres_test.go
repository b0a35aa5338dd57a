package fleetindex_test

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestFleetOnPostgres: the same index over the PostgreSQL backend: it
// follows API changes and loads groups, things and shadows again at a
// restart. Skips without the PostgreSQL binaries.
func TestFleetOnPostgres(t *testing.T) {
	s := daemontest.Start(t, daemontest.WithStore(pgtest.DB(t)))
	ctx := t.Context()
	api := apiclient.New(s.API, s.Token)
	for _, n := range []string{"pg-1", "pg-2"} {
		if _, err := api.CreateThing(ctx, apiclient.NewThing{Name: n, Tags: []string{"pg"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := api.UpdateShadow(ctx, "pg-2", "", []byte(`{"state":{"reported":{"firmware":"v2.1"}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateGroup(ctx, apiclient.NewGroup{Name: "v2", Query: "tags = 'pg' AND version(shadow.reported.firmware) >= '2'"}); err != nil {
		t.Fatal(err)
	}
	check := func() error {
		members, _, err := api.GroupThings(ctx, "v2", apiclient.ListOptions{})
		if err != nil {
			return err
		}
		if names := thingNames(members); !slices.Equal(names, []string{"pg-2"}) {
			return fmt.Errorf("members of v2 = %q; want [pg-2]", names)
		}
		return nil
	}
	daemontest.WaitFor(t, wait, check)
	s.Restart(t)
	api = apiclient.New(s.API, s.Token)
	daemontest.WaitFor(t, wait, check)
}
