package provisioning

import (
	"context"
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// AuditActorID is how a provisioned device is named in the audit log
// (docs/audit.md): the actor is the device (kind device, name its
// registration id or thing), and its id says what admitted it —
// "enrollment:NAME" for an enrollment group, "claim:ID" for a claim token
// (ID its id, never the token), "claim:ID enrollment:NAME" for a claim
// token of a group; "" when neither is known (a refused request).
func AuditActorID(enrollment, claim string) string {
	switch {
	case claim != "" && enrollment != "":
		return "claim:" + claim + " enrollment:" + enrollment
	case claim != "":
		return "claim:" + claim
	case enrollment != "":
		return "enrollment:" + enrollment
	}
	return ""
}

// Actions of the audit entries provisioning records itself (the REST
// routes are recorded by the API edge).
const (
	AuditActionMQTTRegister = "provisioning.mqtt.register" // $mote/provisioning/register
	AuditActionJITR         = "provisioning.jitr"          // a device certificate of an x509CA group, first connect
	AuditActionAWS          = "provisioning.aws.register"  // $aws/provisioning-templates/{name}/provision/json
)

// auditSlot reserves a place in the audit log before a registration that
// does not come through the REST API, so that it is refused — not made
// unrecorded — when the log cannot keep up (docs/audit.md). nil without
// a recorder.
func (s *Service) auditSlot(ctx context.Context) (*audit.Slot, error) {
	if s.opts.Audit == nil {
		return nil, nil
	}
	return s.opts.Audit.Reserve(ctx)
}

// auditCommit records a registration in its slot: the device (as it
// named itself) and its enrollment are the actor, the thing the target.
func auditCommit(slot *audit.Slot, action, device, enrollment string, res Result, err error) {
	if slot == nil {
		return
	}
	e := store.AuditEntry{
		Time:       time.Now(),
		ActorKind:  audit.ActorDevice,
		ActorName:  clipName(device),
		ActorID:    AuditActorID(enrollment, ""),
		Action:     action,
		TargetKind: "thing",
		TargetName: clipName(res.Thing),
		Status:     auditStatus(res, err),
	}
	if err != nil {
		e.TargetName = ""
	}
	slot.Commit(e)
}

func clipName(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}

// auditStatus is the HTTP status the REST API would have answered.
func auditStatus(res Result, err error) int {
	if err == nil {
		if res.Repeated {
			return http.StatusOK
		}
		return http.StatusCreated
	}
	return core.HTTPStatus(core.KindOf(err))
}
