package sim

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/store"
)

// Defaults of provisioning.
const (
	DefaultPrefix   = "sim"
	DefaultType     = "simulated-sensor"
	DefaultGroup    = "simulated"
	DefaultParallel = 32
	// Tag marks the things the simulator made.
	Tag = "simulated"
)

// Identity is one simulated device as provisioned: its thing, a fresh
// secret and what the model needs.
type Identity struct {
	Thing        string
	Secret       string
	CredentialID string
	Site         Site
	Model        string // hardware model (the "model" attribute)
	Firmware     string // the "firmware" attribute
	Created      bool   // the thing was created by this run (else reused)
}

// ProvisionOptions say which things Provision makes.
type ProvisionOptions struct {
	Devices  int    // how many: things PREFIX-0001 .. PREFIX-N
	Prefix   string // default DefaultPrefix
	Type     string // thing type, created if missing; default DefaultType
	Group    string // static group, created if missing; default DefaultGroup
	Parallel int    // API calls in flight; default DefaultParallel
	// Rate is the devices' telemetry rate, for the expected interval of
	// the type's device model (set when the type has none); 0: DefaultRate.
	Rate float64
	// Progress, if set, is called after each device is ready (from several
	// goroutines, never at the same time).
	Progress func(done, total int)
}

// ProvisionReport counts what Provision did.
type ProvisionReport struct {
	Created, Reused    int
	CredentialsDeleted int // earlier simulator secrets deleted
}

// ThingName returns the name of simulated device i (1-based).
func ThingName(prefix string, i int) string { return fmt.Sprintf("%s-%04d", prefix, i) }

func (o *ProvisionOptions) defaults() error {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Type == "" {
		o.Type = DefaultType
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.Devices < 1 {
		return core.Invalid("devices", "the number of devices must be at least 1, not %d", o.Devices)
	}
	if err := core.ValidateName("prefix", ThingName(o.Prefix, o.Devices)); err != nil {
		return core.Invalid("prefix", "prefix %q does not make valid thing names: %v", o.Prefix, err)
	}
	if err := core.ValidateName("type", o.Type); err != nil {
		return err
	}
	return core.ValidateName("group", o.Group)
}

// Provision makes sure things PREFIX-0001 .. PREFIX-N exist through the
// API (creating the type, the group and missing things; reusing existing
// ones, which must be of the simulator's type) and gives each a fresh
// secret credential, deleting the secret credentials earlier runs left on
// it. Things are independent: the first error stops the run and is
// returned.
func Provision(ctx context.Context, c *apiclient.Client, o ProvisionOptions) ([]Identity, ProvisionReport, error) {
	var rep ProvisionReport
	if err := o.defaults(); err != nil {
		return nil, rep, err
	}
	if err := ensureType(ctx, c, o.Type); err != nil {
		return nil, rep, err
	}
	if err := ensureModel(ctx, c, o.Type, o.Rate); err != nil {
		return nil, rep, err
	}
	if err := ensureGroup(ctx, c, o.Group); err != nil {
		return nil, rep, err
	}
	existing, err := apiclient.All(ctx, func(cur string) ([]wire.Thing, string, error) {
		return c.ListThings(ctx, apiclient.ThingQuery{Prefix: o.Prefix + "-", Limit: 1000, Cursor: cur})
	})
	if err != nil {
		return nil, rep, fmt.Errorf("list things %s-*: %w", o.Prefix, err)
	}
	byName := make(map[string]wire.Thing, len(existing))
	for _, t := range existing {
		byName[t.Name] = t
	}

	ids := make([]Identity, o.Devices)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		done     int
		created  atomic.Int64
		deleted  atomic.Int64
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	for range min(o.Parallel, o.Devices) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > o.Devices || ctx.Err() != nil {
					return
				}
				t, ok := byName[ThingName(o.Prefix, i)]
				id, n, err := provisionOne(ctx, c, o, i, t, ok)
				if err != nil {
					fail(err)
					return
				}
				if id.Created {
					created.Add(1)
				}
				deleted.Add(int64(n))
				ids[i-1] = id
				mu.Lock()
				done++
				if o.Progress != nil {
					o.Progress(done, o.Devices)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rep.Created = int(created.Load())
	rep.Reused = o.Devices - rep.Created
	rep.CredentialsDeleted = int(deleted.Load())
	if firstErr != nil {
		rep.Reused = 0
		return nil, rep, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, rep, err
	}
	return ids, rep, nil
}

// provisionOne makes device i ready: the thing (created unless it
// exists), a new secret, and the old secrets deleted. It returns how many
// old secrets it deleted.
func provisionOne(ctx context.Context, c *apiclient.Client, o ProvisionOptions, i int, t wire.Thing, exists bool) (Identity, int, error) {
	name := ThingName(o.Prefix, i)
	site := Sites[(i-1)%len(Sites)]
	id := Identity{Thing: name, Site: site, Model: hardwareModels[(i-1)%len(hardwareModels)], Firmware: DefaultFirmware}
	if exists {
		if t.Type != o.Type {
			return id, 0, core.Conflict("thing %q exists but is not a simulated device (type %q, not %q): choose another --prefix or delete it", name, t.Type, o.Type)
		}
		// The thing's attributes win: an operator may have moved it.
		if s, ok := SiteByCode(t.Attributes["site"]); ok {
			id.Site = s
		}
		if v := t.Attributes["model"]; v != "" {
			id.Model = v
		}
		if v := t.Attributes["firmware"]; v != "" {
			id.Firmware = v
		}
	} else {
		_, err := c.CreateThing(ctx, apiclient.NewThing{
			Name: name,
			Type: o.Type,
			Attributes: map[string]string{
				"model":    id.Model,
				"firmware": id.Firmware,
				"site":     id.Site.Code,
				"city":     id.Site.City,
			},
			Tags:   []string{Tag},
			Groups: []string{o.Group},
		})
		switch {
		case err == nil:
			id.Created = true
		case apiclient.KindOf(err) == core.KindConflict:
			// Made meanwhile by another run: reuse it.
			t, gerr := c.GetThing(ctx, name)
			if gerr != nil {
				return id, 0, fmt.Errorf("get thing %s: %w", name, gerr)
			}
			return provisionOne(ctx, c, o, i, t, true)
		default:
			return id, 0, fmt.Errorf("create thing %s: %w", name, err)
		}
	}
	var old []store.Credential
	if !id.Created {
		creds, err := c.ListCredentials(ctx, name)
		if err != nil {
			return id, 0, fmt.Errorf("list credentials of %s: %w", name, err)
		}
		old = creds
	}
	cred, err := c.CreateSecret(ctx, name, nil)
	if err != nil {
		return id, 0, fmt.Errorf("create a secret for %s: %w", name, err)
	}
	id.Secret, id.CredentialID = cred.Secret, cred.ID
	n := 0
	for _, cr := range old {
		if cr.Type != store.CredentialSecret {
			continue // certificates are never the simulator's
		}
		if err := c.DeleteCredential(ctx, name, cr.ID); err != nil && !apiclient.IsNotFound(err) {
			return id, n, fmt.Errorf("delete old credential %s of %s: %w", cr.ID, name, err)
		}
		n++
	}
	return id, n, nil
}

func ensureType(ctx context.Context, c *apiclient.Client, name string) error {
	_, err := c.GetType(ctx, name)
	if err == nil {
		return nil
	}
	if !apiclient.IsNotFound(err) {
		return fmt.Errorf("get type %s: %w", name, err)
	}
	_, err = c.CreateType(ctx, apiclient.NewType{Name: name, Description: "Simulated sensor (mote sim): temperature, humidity, battery, GPS"})
	if err != nil && apiclient.KindOf(err) != core.KindConflict {
		return fmt.Errorf("create type %s: %w", name, err)
	}
	return nil
}

func ensureGroup(ctx context.Context, c *apiclient.Client, name string) error {
	_, err := c.GetGroup(ctx, name)
	if err == nil {
		return nil
	}
	if !apiclient.IsNotFound(err) {
		return fmt.Errorf("get group %s: %w", name, err)
	}
	_, err = c.CreateGroup(ctx, apiclient.NewGroup{Name: name, Description: "Devices of the simulator (mote sim)"})
	if err != nil && apiclient.KindOf(err) != core.KindConflict {
		return fmt.Errorf("create group %s: %w", name, err)
	}
	return nil
}
