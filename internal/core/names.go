package core

// MaxNameLen bounds the names of things, types, groups and policies.
const MaxNameLen = 128

// ValidateName checks a resource name: 1 to 128 characters from
// [A-Za-z0-9_.:-], not starting with '.' or '-'. Names appear in MQTT topics
// (things/{thing}/...) and URL paths, so they must never contain '/', '+',
// '#', '$' or white space.
func ValidateName(field, name string) error {
	if name == "" {
		return Invalid(field, "%s is required", field)
	}
	if len(name) > MaxNameLen {
		return Invalid(field, "%s is longer than %d characters", field, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == ':':
		case c == '.' || c == '-':
			if i == 0 {
				return Invalid(field, "%s must not start with %q", field, string(c))
			}
		default:
			return Invalid(field, "%s may contain only letters, digits and _ . : - (found %q at position %d)", field, string(rune(c)), i+1)
		}
	}
	return nil
}
