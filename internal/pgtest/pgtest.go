// Package pgtest gives tests a throw-away PostgreSQL server: one cluster
// per test binary, started by TestMain, and a fresh database per test.
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		url := pgtest.DB(t) // postgres://... of a new, empty database
//		...
//	}
//
// Main runs initdb into a temporary directory and starts the server with
// pg_ctl on a free port of 127.0.0.1 (its unix socket in the same
// directory), and stops it and removes the directory when the tests are
// done. PostgreSQL refuses to run as root, so when the tests run as root
// the binaries run as the user "postgres" (or "nobody" if there is none),
// who is given the directory. The binaries are looked for on PATH and in
// /usr/lib/postgresql/*/bin; when they are absent, DB skips the test with
// a message saying how to install them.
//
// MOTE_TEST_POSTGRES=postgres://user:pass@host:port/db uses an existing
// server instead: DB creates (and drops) its databases there, so the user
// needs CREATEDB.
//
// The cluster runs with fsync off: it is for tests, not for data.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable of an existing server to use.
const EnvURL = "MOTE_TEST_POSTGRES"

// NotFound is the skip message when no server can be had.
const NotFound = "PostgreSQL binaries not found; apt-get install postgresql (or set " + EnvURL + "=postgres://...)"

var (
	mu       sync.Mutex
	admin    *pgx.Conn // to the maintenance database; guarded by mu
	adminURL *url.URL  // the server, for building database URLs
	skipMsg  string    // why DB skips; "" when a server is up
	createAs string    // options of CREATE DATABASE
	started  bool      // Main ran
	dbSeq    atomic.Int64
)

// Main starts the server, runs the tests and stops the server. It returns
// the exit code for os.Exit. A server that cannot be started although the
// binaries exist fails the test binary (exit code 1) with the reason.
func Main(m *testing.M) int {
	started = true
	stop, err := start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Open opens a store on url with open (a minute's deadline) and closes it
// when t ends, failing t if either fails: what every backend's tests
// need around their Open.
func Open[T interface{ Close() error }](t testing.TB, url string, open func(ctx context.Context, url string) (T, error)) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// DB creates a new, empty database for t and returns its URL. The
// database is dropped when t ends (after the cleanups registered later,
// such as closing the store on it). It skips t when no server is
// available.
func DB(t testing.TB) string {
	t.Helper()
	if !started {
		t.Fatal("pgtest.DB: the test binary has no TestMain calling pgtest.Main")
	}
	if skipMsg != "" {
		t.Skip(skipMsg)
	}
	name := fmt.Sprintf("mote_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, `CREATE DATABASE `+name+createAs); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	u := *adminURL
	u.Path = "/" + name
	return u.String()
}

func adminExec(ctx context.Context, sql string) error {
	mu.Lock()
	defer mu.Unlock()
	_, err := admin.Exec(ctx, sql)
	return err
}

// start brings up the server (or connects to MOTE_TEST_POSTGRES) and
// returns the function that stops it. No binaries is not an error: DB
// skips.
func start() (stop func() error, err error) {
	if env := os.Getenv(EnvURL); env != "" {
		u, err := url.Parse(env)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvURL, err)
		}
		if err := connectAdmin(u); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvURL, err)
		}
		return closeAdmin, nil
	}
	bin := findBinaries()
	if bin == "" {
		skipMsg = NotFound
		return func() error { return nil }, nil
	}
	c, err := newCluster(bin)
	if err != nil {
		return nil, err
	}
	if err := connectAdmin(c.url()); err != nil {
		c.stop()
		return nil, err
	}
	// PostgreSQL 15 copies the template through the WAL by default; on
	// our own cluster (fsync off) a file copy is twice as fast. Not on a
	// server given by MOTE_TEST_POSTGRES, where its checkpoints cost.
	var version int
	if err := admin.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int`).Scan(&version); err == nil && version >= 150000 {
		createAs = ` STRATEGY FILE_COPY`
	}
	return func() error { return errors.Join(closeAdmin(), c.stop()) }, nil
}

func connectAdmin(u *url.URL) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	admin, adminURL = conn, u
	return nil
}

func closeAdmin() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return admin.Close(ctx)
}

// findBinaries returns the directory holding initdb, pg_ctl and postgres:
// PATH first, then the newest /usr/lib/postgresql/*/bin; "" if none.
func findBinaries() string {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if dir := filepath.Dir(p); has(dir) {
			return dir
		}
	}
	dirs, _ := filepath.Glob(debianBins)
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d
		}
	}
	return ""
}

// debianBins is where Debian's postgresql packages put the binaries (a
// variable for the test).
var debianBins = "/usr/lib/postgresql/*/bin"

// version is the major version in /usr/lib/postgresql/N/bin.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// cluster is a server started by pg_ctl in a temporary directory.
type cluster struct {
	bin  string
	dir  string // temporary directory: data/, the socket, the log
	port int
	cred *syscall.Credential // nil: run as ourselves
}

const superuser = "mote"

// dirPrefix names the temporary directories of clusters; ownerFile in
// one holds the pid of the test binary that started it.
const (
	dirPrefix = "mote-pgtest-"
	ownerFile = "owner.pid"
)

func newCluster(bin string) (*cluster, error) {
	reapStale(bin)
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	c := &cluster{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		if c.cred, err = unprivileged(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	if err := c.run("initdb", "-D", c.data(), "-U", superuser, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A free port: taken from the kernel, then released for the server. A
	// race with another process taking it in between makes pg_ctl fail;
	// try a few ports.
	for try := 0; ; try++ {
		if c.port, err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		opts := strings.Join([]string{
			"-p", strconv.Itoa(c.port),
			"-k", dir,
			"-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=300",
		}, " ")
		err = c.run("pg_ctl", "start", "-w", "-t", "60", "-D", c.data(), "-l", filepath.Join(dir, "server.log"), "-o", opts)
		if err == nil {
			return c, nil
		}
		if try == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("%w\nserver log:\n%s", err, log)
		}
	}
}

// reapStale stops and removes the clusters of test binaries that died
// without stopping theirs (a panic, a kill, a timeout skip TestMain's
// stop): their servers would otherwise run on.
func reapStale(bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil || pid == os.Getpid() {
			continue // its test binary is alive
		}
		c := &cluster{bin: bin, dir: dir}
		if fi, err := os.Stat(dir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uint32(os.Geteuid()) {
				c.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid, NoSetGroups: true}
			}
		}
		if _, err := os.Stat(filepath.Join(c.data(), "postmaster.pid")); err == nil {
			_ = c.run("pg_ctl", "stop", "-w", "-t", "30", "-m", "immediate", "-D", c.data())
		}
		os.RemoveAll(dir)
	}
}

func (c *cluster) data() string { return filepath.Join(c.dir, "data") }

func (c *cluster) url() *url.URL {
	return &url.URL{Scheme: "postgres", User: url.User(superuser),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), Path: "/postgres",
		RawQuery: "sslmode=disable"}
}

// stop shuts the server down (fast: sessions are ended) and removes the
// directory.
func (c *cluster) stop() error {
	err := c.run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", c.data())
	return errors.Join(err, os.RemoveAll(c.dir))
}

// run runs one of the PostgreSQL programs, as the unprivileged user if
// there is one.
func (c *cluster) run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// unprivileged returns the credentials of "postgres", or of "nobody".
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("running as root and there is no user postgres or nobody to run PostgreSQL as")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
