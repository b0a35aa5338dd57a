package httpapi

// GETRoutes lists the paths (relative to BasePath) of the route table's
// GET routes, so that the external pagination test covers every list.
func GETRoutes() []string {
	var out []string
	for _, rt := range (&server{}).routes() {
		if rt.method == "GET" {
			out = append(out, rt.path)
		}
	}
	return out
}

// RouteInfo is one route of the table with its declared role and scope
// rule, for the authorization matrix test.
type RouteInfo struct {
	Method, Path string
	Role         string // "", viewer, operator, admin or device
	Scope        string // fleet, thing, filtered or open
}

// RouteTable returns the whole route table.
func RouteTable() []RouteInfo {
	var out []RouteInfo
	for _, rt := range (&server{}).routes() {
		out = append(out, RouteInfo{Method: rt.method, Path: rt.path, Role: rt.role, Scope: scopeRuleOf(rt).String()})
	}
	return out
}

// RoleAllows reports whether role have may use a route needing need.
func RoleAllows(have, need string) bool { return roleAllows(have, need) }
