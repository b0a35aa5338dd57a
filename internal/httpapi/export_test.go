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
