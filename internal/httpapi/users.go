package httpapi

import (
	"context"
	"net/http"
	"slices"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/users"
)

// Users (docs/users.md): admins manage the console users, their roles
// and group scopes; anyone may read its own account and change its own
// password.

// userJSON is a user on the wire (never its password hash).
type userJSON = wire.User

func userOut(u store.User) userJSON {
	return userJSON{Name: u.Name, Role: u.Role, Groups: u.Groups, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, LastLoginAt: u.LastLoginAt}
}

// userCreate is the body of POST /users.
type userCreate struct {
	Name     string   `json:"name"`
	Password string   `json:"password"`
	Role     string   `json:"role"`
	Groups   []string `json:"groups"`
}

// userPatch is the body of PATCH /users/{name}: what is present changes;
// "groups": [] removes the scope.
type userPatch struct {
	Role   *string   `json:"role"`
	Groups *[]string `json:"groups"`
}

// passwordChange is the body of POST /users/{name}/password.
type passwordChange struct {
	OldPassword string `json:"oldPassword"`
	Password    string `json:"password"`
}

func (s *server) userService() (*users.Service, error) {
	if s.users == nil {
		return nil, core.Errorf(core.KindUnavailable, "users are not available on this server")
	}
	return s.users, nil
}

// checkGroups checks that the groups of a scope exist.
func (s *server) checkGroups(ctx context.Context, field string, groups []string) error {
	for _, g := range groups {
		if err := core.ValidateName(field, g); err != nil {
			return err
		}
		if _, err := s.reg.GetGroup(ctx, g); err != nil {
			if core.IsNotFound(err) {
				return core.Invalid(field, "%s: there is no group %q", field, g)
			}
			return err
		}
	}
	return nil
}

func (s *server) createUser(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.userService()
	if err != nil {
		return err
	}
	var in userCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Groups != nil && len(in.Groups) == 0 {
		in.Groups = nil
	}
	if err := s.checkGroups(r.Context(), "groups", in.Groups); err != nil {
		return err
	}
	u, err := svc.CreateScoped(r.Context(), in.Name, in.Password, in.Role, in.Groups)
	if err != nil {
		return err
	}
	s.log.Info("user created", "user", u.Name, "role", u.Role, "by", principalName(r))
	return created(w, "/users/"+u.Name, userOut(u))
}

func (s *server) listUsers(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	svc, err := s.userService()
	if err != nil {
		return err
	}
	list, err := svc.List(r.Context())
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = 100
	}
	start := 0
	if after != "" {
		start, _ = slices.BinarySearchFunc(list, after, func(u store.User, name string) int {
			switch {
			case u.Name < name:
				return -1
			case u.Name > name:
				return 1
			}
			return 0
		})
		if start < len(list) && list[start].Name == after {
			start++
		}
	}
	end := min(start+limit, len(list))
	out := make([]userJSON, 0, end-start)
	for _, u := range list[start:end] {
		out = append(out, userOut(u))
	}
	next := ""
	if end < len(list) {
		next = list[end-1].Name
	}
	return writeJSON(w, http.StatusOK, newList(out, next))
}

// selfOrAdmin allows an admin, or the user named in the path itself.
func selfOrAdmin(r *http.Request, name string) error {
	t, _ := tokenFrom(r.Context())
	if t.Role == roleAdmin || (t.User != "" && t.User == name) {
		return nil
	}
	return core.Errorf(core.KindForbidden, "only an admin may read or change another user")
}

func (s *server) getUser(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.userService()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := selfOrAdmin(r, name); err != nil {
		return err
	}
	u, err := svc.Get(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, userOut(u))
}

func (s *server) updateUser(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.userService()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	var in userPatch
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	u, err := svc.Get(r.Context(), name)
	if err != nil {
		return err
	}
	role, groups := u.Role, u.Groups
	if in.Role != nil {
		role = *in.Role
	}
	if in.Groups != nil {
		groups = *in.Groups
		if len(groups) == 0 {
			groups = nil
		}
		if err := s.checkGroups(r.Context(), "groups", groups); err != nil {
			return err
		}
	}
	u, err = svc.Update(r.Context(), name, role, groups)
	if err != nil {
		return err
	}
	s.log.Info("user changed", "user", u.Name, "role", u.Role, "groups", u.Groups, "by", principalName(r))
	return writeJSON(w, http.StatusOK, userOut(u))
}

func (s *server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.userService()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := svc.Delete(r.Context(), name); err != nil {
		return err
	}
	s.log.Info("user deleted (with its sessions and tokens)", "user", name, "by", principalName(r))
	return noContent(w)
}

// changePassword is POST /users/{name}/password: a user changing its
// own password gives the current one; an admin resets another's.
func (s *server) changePassword(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.userService()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := selfOrAdmin(r, name); err != nil {
		return err
	}
	var in passwordChange
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Password == "" {
		return core.Invalid("password", "password is required")
	}
	t, _ := tokenFrom(r.Context())
	if t.User == name {
		if in.OldPassword == "" {
			return core.Invalid("oldPassword", "oldPassword is required to change your own password")
		}
		_, err = svc.ChangePassword(r.Context(), name, in.OldPassword, in.Password, clientAddr(r))
	} else {
		if _, err = svc.Get(r.Context(), name); err != nil {
			return err
		}
		_, err = svc.SetPassword(r.Context(), name, in.Password)
	}
	if err != nil {
		return err
	}
	s.log.Info("user password changed (its sessions ended)", "user", name, "by", principalName(r))
	return noContent(w)
}

// principalName names who made a request, for logs.
func principalName(r *http.Request) string {
	t, ok := tokenFrom(r.Context())
	switch {
	case !ok:
		return ""
	case t.User != "" && t.ID == "@"+t.User:
		return "user " + t.User
	case t.User != "":
		return "token " + t.ID + " of user " + t.User
	}
	return "token " + t.ID
}
