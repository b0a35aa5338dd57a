package provisioning

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
