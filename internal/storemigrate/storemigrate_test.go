package storemigrate

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/store"
	storepostgres "github.com/moteiot/mote/internal/store/postgres"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/telemetry"
	telemetrypostgres "github.com/moteiot/mote/internal/telemetry/postgres"
	telemetrysqlite "github.com/moteiot/mote/internal/telemetry/sqlite"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// installation fills a data directory with some of everything the
// stores keep, as a server would have.
func installation(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(datadir.DB(dir))
	must(t, err)
	defer st.Close()
	t0 := time.Date(2024, 6, 10, 6, 13, 20, 123_000_000, time.UTC)
	later := t0.Add(time.Hour)
	_, err = st.Policies().Create(ctx, store.Policy{Name: "p", Description: "d", Document: []byte(`{"x": 1}`), Builtin: true, CreatedAt: t0})
	must(t, err)
	_, err = st.Policies().Create(ctx, store.Policy{Name: "q", Document: []byte(`{}`)})
	must(t, err)
	_, err = st.Types().Create(ctx, store.ThingType{Name: "sensor", Policies: []string{"q", "p"}, Model: []byte(`{"telemetry":{"t":{"unit":"°C"}}}`)})
	must(t, err)
	_, err = st.Groups().Create(ctx, store.Group{Name: "g"})
	must(t, err)
	_, err = st.Groups().Create(ctx, store.Group{Name: "dyn", Query: "connected = true"})
	must(t, err)
	_, err = st.Things().Create(ctx, store.Thing{Name: "dev1", Type: "sensor", Enabled: true, Attributes: map[string]string{"k": "v", "é": "ü"},
		Tags: []string{"b", "a"}, Groups: []string{"g"}, Policies: []string{"q", "p"}, CreatedAt: t0})
	must(t, err)
	_, err = st.Things().Create(ctx, store.Thing{Name: "dev2"})
	must(t, err)
	must(t, st.Things().RecordPresence(ctx, []store.Presence{{Thing: "dev2", Connected: true, At: later}}))
	must(t, st.Things().RecordActivity(ctx, []store.Activity{
		{Thing: "dev1", LastSeen: later, PublishDenied: 2, LastDeniedTopic: "x/y", LastDeniedAt: later},
		{Thing: "dev1", ModelViolations: 4, LastModelViolation: `{"key":"t","value":200}`, LastModelViolationAt: later},
		{Thing: "dev2", InvalidTelemetry: 1, LastInvalidAt: t0},
	}))
	_, err = st.Credentials().Create(ctx, store.Credential{ID: "c1", Thing: "dev1", Type: store.CredentialSecret, SecretHash: []byte{0, 1, 2, 255}})
	must(t, err)
	_, err = st.Credentials().Create(ctx, store.Credential{ID: "c2", Thing: "dev2", Type: store.CredentialX509, Fingerprint: "ab", CertPEM: "PEM", NotAfter: &later})
	must(t, err)
	_, err = st.Credentials().Create(ctx, store.Credential{ID: "c3", Thing: "dev2", Type: store.CredentialSymmetricKey, SealedKey: "mote:sealed:v1:abc"})
	must(t, err)
	_, err = st.Credentials().Revoke(ctx, "c2", later)
	must(t, err)
	_, err = st.Tokens().Create(ctx, store.Token{ID: "t1", Name: "ci", Hash: []byte("h"), Role: "admin", ExpiresAt: &later, User: "admin", Groups: []string{"plant-3"}, RateLimit: 60})
	must(t, err)
	_, err = st.Shadows().Write(ctx, []store.ShadowWrite{
		{Thing: "dev1", Version: 3, Document: []byte(`{"state":{}}`)},
		{Thing: "dev1", Name: "cfg", Version: 7, Deleted: true},
	})
	must(t, err)
	_, err = st.Rules().Create(ctx, store.Rule{Name: "r", SQL: "SELECT * FROM 'a'", Enabled: true, Actions: []byte(`[{"type":"log"}]`), ErrorAction: []byte(`{"type":"log"}`)})
	must(t, err)
	_, err = st.Rules().Seed(ctx, store.Rule{Name: "seeded", SQL: "SELECT 1 FROM 'b'"})
	must(t, err)
	must(t, st.Rules().Delete(ctx, "seeded"))
	for _, id := range []string{"cmd1", "cmd2", "cmd3"} {
		_, err = st.Commands().Create(ctx, store.Command{ID: id, Thing: "dev1", Name: "reboot", Payload: []byte(`{"now":true}`), ExpiresAt: later})
		must(t, err)
	}
	_, err = st.Commands().Transition(ctx, "dev1", "cmd1", []string{store.CommandQueued}, store.CommandSucceeded, later,
		&store.CommandResult{Status: store.CommandSucceeded, Output: []byte(`{"ok":1}`)})
	must(t, err)
	_, err = st.Users().Create(ctx, store.User{Name: "admin", PasswordHash: []byte("bcrypt"), Role: "admin", Groups: []string{"plant-3"}})
	must(t, err)
	must(t, st.Users().CreateSession(ctx, store.Session{IDHash: []byte{9, 9}, User: "admin", ExpiresAt: later}))
	must(t, st.Retained().Apply(ctx, []store.RetainedMessage{{Topic: "a/b", Data: []byte{1, 2}}}))
	for i, typ := range []string{"overheat", "silent"} {
		_, _, err = st.Alarms().Raise(ctx, store.Alarm{ID: fmt.Sprint("alm", i), Thing: "dev1", Type: typ, Severity: store.SeverityMajor, Details: []byte(`{"v":1}`)}, 0)
		must(t, err)
	}
	_, err = st.Alarms().Ack(ctx, "alm0", later)
	must(t, err)
	_, err = st.Analytics().CreateRule(ctx, store.AnalyticsRule{Name: "hot", Kind: "threshold", Group: "g", Config: []byte(`{"key":"t"}`), Enabled: true})
	must(t, err)
	must(t, st.Analytics().PutStates(ctx, []store.DetectorState{{Rule: "hot", Thing: "dev1", State: []byte{0, 1, 255}}}))
	must(t, st.Sessions().Apply(ctx, store.SessionChanges{
		Clients:  []store.SessionClient{{ID: "c1", Data: []byte("s")}},
		Messages: []store.SessionMessage{{Client: "c1", PacketID: 65535, Data: []byte("m")}},
	}))
	_, err = st.Artifacts().Create(ctx, store.Artifact{Name: "fw", Version: "1.0", ContentType: "application/octet-stream", Size: 3, SHA256: "ab", Signature: "sig", SigningKey: "k", BlobKey: "artifacts/fw/1", CreatedAt: t0})
	must(t, err)
	_, err = st.Artifacts().Create(ctx, store.Artifact{Name: "fw", Version: "1.1", Size: 4, SHA256: "cd", BlobKey: "artifacts/fw/2"})
	must(t, err)
	_, err = st.Files().Put(ctx, store.File{Thing: "dev1", Name: "log.txt", ContentType: "text/plain", Complete: true, Size: 9, SHA256: "ef", BlobKey: "files/dev1/a", Total: -1, CreatedAt: t0})
	must(t, err)
	_, err = st.Files().Put(ctx, store.File{Thing: "dev1", Name: "core.dump", UploadID: "u", Received: 5, Total: 10, Parts: 1})
	_, _, err = st.Jobs().Create(ctx, store.Job{ID: "job1", Description: "ota", Status: store.JobInProgress, Spec: []byte(`{"document":{}}`), CreatedAt: t0}, []string{"dev1", "dev2"})
	must(t, err)
	_, err = st.Dashboards().Create(ctx, store.Dashboard{Name: "wall", Title: "Wall", Widgets: []byte(`[{"id":"w1","type":"alarms"}]`)}, 0)
	must(t, err)
	_, err = st.Dashboards().Update(ctx, store.Dashboard{Name: "wall", Title: "Wall 2", Widgets: []byte(`[]`)}, 1)
	must(t, err)
	must(t, st.RuleWindows().Put(ctx, store.RuleWindowState{Rule: "r", SQL: "SELECT * FROM 'a'", State: []byte{1, 0, 0xfe}, SavedAt: t0}))
	must(t, st.StatsHistory().Append(ctx, store.StatsPoint{Time: t0, Interval: time.Minute, Messages: 42, Connected: 3, ActiveAlarms: 1}, time.Time{}))
	rel, err := st.Jobs().Release(ctx, "job1", 1, later, later)
	must(t, err)
	rel[0].Status, rel[0].StartedAt, rel[0].TimeoutAt, rel[0].StatusDetails = store.JobExecInProgress, &later, &later, map[string]string{"p": "50"}
	_, err = st.Jobs().UpdateExecution(ctx, rel[0], rel[0].VersionNumber)
	must(t, err)
	_, err = st.Profiles().Create(ctx, store.Profile{Name: "cfg", Description: "d", Desired: []byte(`{"a":1}`), Query: `type = "x"`, Priority: -2, CreatedAt: t0})
	must(t, err)
	must(t, st.Profiles().PutApplied(ctx, store.ProfileApplied{Thing: "dev1", Profiles: []string{"cfg"}, State: []byte(`[]`)}))
	pexp := t0.Add(time.Hour)
	_, err = st.Provisioning().CreateEnrollment(ctx, store.Enrollment{Name: "fleet", Attestation: store.AttestationSymmetricKey, SealedKey: "sealed:k",
		Spec: []byte(`{"type":"t"}`), Enabled: true, MaxDevices: 10, ExpiresAt: &pexp, VerificationExpires: &pexp, CreatedAt: t0})
	must(t, err)
	_, err = st.Provisioning().Reserve(ctx, "fleet")
	must(t, err)
	_, err = st.Provisioning().PutRegistration(ctx, store.Registration{Enrollment: "fleet", ID: "dev1", Thing: "dev1", Credential: "c"})
	must(t, err)
	_, err = st.Provisioning().CreateClaim(ctx, store.Claim{ID: "clm1", TokenHash: []byte{7, 7}, Thing: "dev9", ExpiresAt: pexp, RedeemedAt: &later, RedeemedThing: "dev9", CreatedAt: t0})
	must(t, err)
	must(t, st.Audit().Append(ctx, []store.AuditEntry{
		{ID: "0001", Time: t0, ActorKind: "token", ActorName: "ops", ActorID: "tok_1", Action: "thing.update", TargetKind: "thing", TargetName: "dev1",
			Status: 200, Source: "10.0.0.1", RequestID: "r1", Before: []byte(`{"a":1}`), After: []byte(`{"a":2}`)},
		{ID: "0002", Time: later, ActorKind: "user", ActorName: "alice", Action: "thing.delete", TargetKind: "thing", TargetName: "dev9", Status: 204, Omitted: true},
	}))

	ts, err := telemetrysqlite.Open(datadir.Telemetry(dir))
	must(t, err)
	defer ts.Close()
	day := int64(86_400_000)
	base := t0.UnixMilli()
	must(t, ts.Append(ctx, []telemetry.Point{
		{Thing: "dev1", Key: "temp", TS: base, Value: telemetry.Number(21.5)},
		{Thing: "dev1", Key: "temp", TS: base, Value: telemetry.Number(22)}, // same ms: arrival order
		{Thing: "dev1", Key: "temp", TS: base + day, Value: telemetry.Number(-1)},
		{Thing: "dev1", Key: "door", TS: base + 2*day, Value: telemetry.String("open")},
		{Thing: "dev2", Key: "ok", TS: base - 10*day, Value: telemetry.Bool(true)},
	}, 5))
	must(t, ts.Append(ctx, []telemetry.Point{{Thing: "dev1", Key: "temp", TS: base - day, Value: telemetry.Number(3)}}, 6)) // late
	// A named journal's replay point (a cluster node's; issue 12).
	must(t, ts.Close())
	tj, err := telemetrysqlite.OpenJournal(datadir.Telemetry(dir), "node-x")
	must(t, err)
	must(t, tj.Append(ctx, nil, 9))
	must(t, tj.Close())
	return dir
}

// TestCopy copies an installation into PostgreSQL, checks the report
// (every table counted and checksummed) and then, independently of the
// tool's own check, reads both stores through their interfaces.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	dir := installation(t)
	url := pgtest.DB(t)
	var progress strings.Builder
	rep, err := Copy(ctx, dir, url, &progress)
	if err != nil {
		t.Fatalf("Copy: %v\n%s", err, progress.String())
	}
	if len(rep.Tables) != len(tables)+1 {
		t.Errorf("report has %d tables; want %d", len(rep.Tables), len(tables)+1)
	}
	for _, tr := range rep.Tables {
		if tr.Rows == 0 || len(tr.Checksum) != 64 {
			t.Errorf("report: %s has %d rows, checksum %q; want rows (the installation has some of everything)", tr.Table, tr.Rows, tr.Checksum)
		}
	}
	if rep.LastSeq != 6 {
		t.Errorf("LastSeq = %d; want 6", rep.LastSeq)
	}

	src, err := sqlite.Open(datadir.DB(dir))
	must(t, err)
	defer src.Close()
	dst, err := storepostgres.Open(ctx, url, storepostgres.Options{})
	must(t, err)
	defer dst.Close()
	same := func(what string, get func(s store.Store) (any, error)) {
		t.Helper()
		want, err1 := get(src)
		got, err2 := get(dst)
		if err1 != nil && core.KindOf(err1) != core.KindNotFound || !reflect.DeepEqual(got, want) || (err1 == nil) != (err2 == nil) {
			t.Errorf("%s:\n PostgreSQL %+v (%v)\n SQLite     %+v (%v)", what, got, err2, want, err1)
		}
	}
	same("things", func(s store.Store) (any, error) { return s.Things().List(ctx, store.ThingFilter{}) })
	same("groups", func(s store.Store) (any, error) { return s.Groups().List(ctx, "", 0) })
	same("types", func(s store.Store) (any, error) { return s.Types().List(ctx, "", 0) })
	same("policies", func(s store.Store) (any, error) { return s.Policies().List(ctx, "", 0) })
	same("credentials", func(s store.Store) (any, error) { return s.Credentials().ListByThing(ctx, "dev2") })
	same("secret", func(s store.Store) (any, error) { return s.Credentials().FindSecret(ctx, []byte{0, 1, 2, 255}) })
	same("tokens", func(s store.Store) (any, error) { return s.Tokens().List(ctx) })
	same("tombstone", func(s store.Store) (any, error) { return s.Shadows().Get(ctx, "dev1", "cfg") })
	same("shadows", func(s store.Store) (any, error) { return s.Shadows().List(ctx, "dev1") })
	same("rules", func(s store.Store) (any, error) { return s.Rules().List(ctx, "", 0) })
	same("seeded", func(s store.Store) (any, error) { return s.Rules().Seed(ctx, store.Rule{Name: "seeded", SQL: "x"}) })
	same("commands", func(s store.Store) (any, error) { return s.Commands().List(ctx, store.CommandFilter{Thing: "dev1"}) })
	same("session", func(s store.Store) (any, error) { return s.Users().GetSession(ctx, []byte{9, 9}) })
	same("users", func(s store.Store) (any, error) { return s.Users().List(ctx) })
	same("retained", func(s store.Store) (any, error) { return s.Retained().List(ctx) })
	same("jobs", func(s store.Store) (any, error) { return s.Jobs().List(ctx, "", 0) })
	same("profiles", func(s store.Store) (any, error) { return s.Profiles().List(ctx, "", 0) })
	same("profile state", func(s store.Store) (any, error) { return s.Profiles().ListApplied(ctx, "", 0) })
	same("dashboards", func(s store.Store) (any, error) { return s.Dashboards().List(ctx, "", 0) })
	same("rule windows", func(s store.Store) (any, error) { return s.RuleWindows().List(ctx) })
	same("stats history", func(s store.Store) (any, error) { return s.StatsHistory().Since(ctx, time.Time{}, 0) })
	same("audit", func(s store.Store) (any, error) { return s.Audit().List(ctx, store.AuditFilter{}) })
	same("job executions", func(s store.Store) (any, error) {
		return s.Jobs().Executions(ctx, store.JobExecutionFilter{JobID: "job1"})
	})
	// The execution sequence continues after the copied ones.
	_, _, err = dst.Jobs().Create(ctx, store.Job{ID: "job2", Status: store.JobInProgress, Spec: []byte(`{}`)}, []string{"dev1", "dev2"})
	must(t, err)
	same("mqtt sessions", func(s store.Store) (any, error) { return s.Sessions().List(ctx) })
	same("alarms", func(s store.Store) (any, error) { return s.Alarms().List(ctx, store.AlarmFilter{}) })
	same("analytics rules", func(s store.Store) (any, error) { return s.Analytics().ListRules(ctx, "", 0) })
	same("enrollments", func(s store.Store) (any, error) { return s.Provisioning().ListEnrollments(ctx, "", 0) })
	same("registration", func(s store.Store) (any, error) { return s.Provisioning().GetRegistration(ctx, "fleet", "dev1") })
	same("claims", func(s store.Store) (any, error) { return s.Provisioning().ListClaims(ctx, "", 0) })
	same("detector states", func(s store.Store) (any, error) { return s.Analytics().States(ctx) })

	// The alarm sequence continues after the copied ones.
	_, _, err = dst.Alarms().Raise(ctx, store.Alarm{ID: "alm9", Thing: "dev1", Type: "new", Severity: store.SeverityMinor}, 0)
	must(t, err)
	if al, err := dst.Alarms().List(ctx, store.AlarmFilter{Limit: 1}); err != nil || len(al) != 1 || al[0].ID != "alm9" {
		t.Errorf("newest alarm after a raise on the copy = %+v, %v; want alm9", al, err)
	}

	// The command sequence continues after the copied ones.
	_, err = dst.Commands().Create(ctx, store.Command{ID: "cmd4", Thing: "dev1", Name: "x", ExpiresAt: time.Now().Add(time.Hour)})
	must(t, err)
	list, err := dst.Commands().List(ctx, store.CommandFilter{Thing: "dev1", Limit: 1})
	must(t, err)
	if len(list) != 1 || list[0].ID != "cmd4" {
		t.Errorf("newest command after a create on the copy = %+v; want cmd4", list)
	}

	tsrc, err := telemetrysqlite.Open(datadir.Telemetry(dir))
	must(t, err)
	defer tsrc.Close()
	tdst, err := telemetrypostgres.Open(ctx, url, telemetrypostgres.Options{})
	must(t, err)
	defer tdst.Close()
	q := telemetry.RangeQuery{Things: []string{"dev1", "dev2"}, From: 0, To: telemetry.MaxTS + 1, Limit: 100}
	want, _, err := tsrc.Range(ctx, q)
	must(t, err)
	got, _, err := tdst.Range(ctx, q)
	must(t, err)
	if len(want) != 6 || !reflect.DeepEqual(got, want) {
		t.Errorf("telemetry:\n PostgreSQL %+v\n SQLite     %+v", got, want)
	}
	if last, err := tdst.LastSeq(ctx); err != nil || last != 6 {
		t.Errorf("telemetry LastSeq in PostgreSQL = %d, %v; want 6", last, err)
	}
	tj, err := telemetrypostgres.Open(ctx, url, telemetrypostgres.Options{Journal: "node-x"})
	must(t, err)
	defer tj.Close()
	if last, err := tj.LastSeq(ctx); err != nil || last != 9 {
		t.Errorf("journal node-x LastSeq in PostgreSQL = %d, %v; want 9 (carried over)", last, err)
	}
}

// TestCopyRefusesData: a target that holds data is refused, and nothing
// is copied into it.
func TestCopyRefusesData(t *testing.T) {
	ctx := context.Background()
	dir := installation(t)
	url := pgtest.DB(t)
	dst, err := storepostgres.Open(ctx, url, storepostgres.Options{})
	must(t, err)
	defer dst.Close()
	_, err = dst.Groups().Create(ctx, store.Group{Name: "there"})
	must(t, err)
	if _, err := Copy(ctx, dir, url, nil); core.KindOf(err) != core.KindConflict {
		t.Fatalf("Copy into a database with data: %v; want a conflict", err)
	}
	if n, _, err := dst.Things().Count(ctx); err != nil || n != 0 {
		t.Errorf("things after a refused copy: %d, %v; want 0", n, err)
	}
}

// TestVerifyCatchesADifference: the verification is not a formality; a
// row changed after the copy makes it fail.
func TestVerifyCatchesADifference(t *testing.T) {
	ctx := context.Background()
	dir := installation(t)
	url := pgtest.DB(t)
	if _, err := Copy(ctx, dir, url, nil); err != nil {
		t.Fatal(err)
	}
	dst, err := storepostgres.Open(ctx, url, storepostgres.Options{})
	must(t, err)
	defer dst.Close()
	if _, err := dst.Pool().Exec(ctx, `UPDATE thing_attributes SET value = 'w' WHERE key = 'k'`); err != nil {
		t.Fatal(err)
	}
	raw, err := openRaw(datadir.DB(dir))
	must(t, err)
	defer raw.Close()
	var attrs table
	for _, tb := range tables {
		if tb.pg == "thing_attributes" {
			attrs = tb
		}
	}
	if _, err := verifyTable(ctx, raw, dst.Pool(), attrs); err == nil || !strings.Contains(err.Error(), "thing_attributes") {
		t.Fatalf("verify after a change: %v; want a mismatch naming thing_attributes", err)
	}
}
