// Command mote is Mote's single binary: the server (mote serve) and the
// command line client of its REST API.
package main

import (
	"os"

	"github.com/moteiot/mote/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
