package bus_test

import (
	"testing"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/bus/bustest"
)

func TestLocalConformance(t *testing.T) {
	bustest.Run(t, func(*testing.T) bus.Bus { return &bus.Local{} })
}
