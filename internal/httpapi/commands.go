package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/store"
)

// Queued commands (docs/commands.md): the application side under
// /things/{name}/commands and the device side under
// /devices/{thing}/commands.

// commandRequest is the body of POST /things/{name}/commands.
type commandRequest struct {
	Name       string          `json:"name"`
	Payload    json.RawMessage `json:"payload"`
	TTLSeconds *int            `json:"ttlSeconds"`
}

// commandResultRequest is the body of POST /devices/{thing}/commands/{id}/result.
type commandResultRequest struct {
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
}

func (s *server) commandService() (*commands.Service, error) {
	if s.commands == nil {
		return nil, core.Errorf(core.KindUnavailable, "commands are not enabled on this server")
	}
	return s.commands, nil
}

// commandThing returns the service and the thing of a
// /things/{name}/commands route; the thing must exist (404).
func (s *server) commandThing(r *http.Request) (*commands.Service, string, error) {
	svc, err := s.commandService()
	if err != nil {
		return nil, "", err
	}
	thing, err := pathName(r, "name")
	if err != nil {
		return nil, "", err
	}
	if _, err := s.reg.GetThing(r.Context(), thing); err != nil {
		return nil, "", err
	}
	return svc, thing, nil
}

// commandID checks the {id} path segment.
func commandID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := core.ValidateName("id", id); err != nil {
		return "", err
	}
	return id, nil
}

func (s *server) createCommand(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, thing, err := s.commandThing(r)
	if err != nil {
		return err
	}
	var req commandRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	var ttl time.Duration
	if req.TTLSeconds != nil {
		if *req.TTLSeconds < 1 || *req.TTLSeconds > int(commands.MaxTTL/time.Second) {
			_, err := commands.ValidateTTL(-1)
			return err
		}
		ttl = time.Duration(*req.TTLSeconds) * time.Second
	}
	if err := s.checkCommand(r.Context(), thing, req.Name, req.Payload); err != nil {
		return err
	}
	c, err := svc.Create(r.Context(), thing, commands.Request{Name: req.Name, Payload: req.Payload, TTL: ttl})
	if err != nil {
		return err
	}
	return created(w, "/things/"+thing+"/commands/"+c.ID, commandOut(c))
}

func (s *server) listCommands(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "", "status", "limit", "cursor")
	if err != nil {
		return err
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	svc, thing, err := s.commandThing(r)
	if err != nil {
		return err
	}
	list, next, err := pageAfter(q.vals["cursor"], limit, func(before string, n int) ([]store.Command, error) {
		return svc.List(r.Context(), store.CommandFilter{Thing: thing, Status: q.vals["status"], Before: before, Limit: n})
	}, func(c store.Command) string { return c.ID })
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, newList(commandsOut(list), next))
}

func (s *server) getCommand(w http.ResponseWriter, r *http.Request) error {
	return s.oneCommand(w, r, (*commands.Service).Get)
}

// cancelCommand is DELETE /things/{name}/commands/{id}: 200 with the
// cancelled command; 409 once it was delivered or ended.
func (s *server) cancelCommand(w http.ResponseWriter, r *http.Request) error {
	return s.oneCommand(w, r, (*commands.Service).Cancel)
}

// oneCommand answers a request on /things/{name}/commands/{id} with what
// op returns for that command.
func (s *server) oneCommand(w http.ResponseWriter, r *http.Request,
	op func(*commands.Service, context.Context, string, string) (store.Command, error)) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, thing, err := s.commandThing(r)
	if err != nil {
		return err
	}
	id, err := commandID(r)
	if err != nil {
		return err
	}
	c, err := op(svc, r.Context(), thing, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, commandOut(c))
}

// parseWait reads the wait parameter of a long poll: a Go duration
// ("30s", "1m") or whole seconds, 0 to commands.MaxWait.
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, core.Invalid("wait", "wait must be a duration such as 30s, or whole seconds")
		}
		if n < 0 || n > int(commands.MaxWait/time.Second) {
			return 0, core.Invalid("wait", "wait must be from 0s to %s", commands.MaxWait)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > commands.MaxWait {
		return 0, core.Invalid("wait", "wait must be from 0s to %s", commands.MaxWait)
	}
	return d, nil
}

// devicePollCommands is GET /devices/{thing}/commands?wait=30s: the
// device's pending commands, oldest first, which are then delivered. With
// none pending it waits up to wait for one and answers an empty list.
func (s *server) devicePollCommands(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.commandService()
	if err != nil {
		return err
	}
	q, err := parseQuery(r, "", "wait")
	if err != nil {
		return err
	}
	wait, err := parseWait(q.vals["wait"])
	if err != nil {
		return err
	}
	thing := deviceIdentity(r).Thing
	if wait > 0 {
		release, err := s.longPolls.acquire(thing)
		if err != nil {
			return err
		}
		defer release()
	}
	list, err := svc.Poll(r.Context(), thing, wait)
	if err != nil {
		return err
	}
	items := make([]commands.Message, len(list))
	for i, c := range list {
		items[i] = commands.MessageOf(c)
	}
	return writeJSON(w, http.StatusOK, newList(items, ""))
}

// deviceReportCommand is POST /devices/{thing}/commands/{id}/result: the
// outcome of a command, {"status": "succeeded"|"failed"|"rejected",
// "output"?: any}. 200 with the command; 409 if it already ended.
func (s *server) deviceReportCommand(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.commandService()
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	id, err := commandID(r)
	if err != nil {
		return err
	}
	thing := deviceIdentity(r).Thing
	if s.gateway != nil {
		// The same policies and rate limit as the MQTT result topic.
		if err := s.gateway.Authorize(r.Context(), thing, thing, commands.ResultTopic(thing, id), "http"); err != nil {
			return retryAfter(w, err)
		}
	}
	var req commandResultRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	c, err := svc.Report(r.Context(), thing, id, store.CommandResult{Status: req.Status, Output: req.Output})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, commandOut(c))
}

// commandOut maps a command's row to the wire.
func commandOut(c store.Command) wire.Command {
	out := wire.Command{ID: c.ID, Thing: c.Thing, Name: c.Name, Payload: c.Payload, Status: c.Status,
		CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, DeliveredAt: c.DeliveredAt, CompletedAt: c.CompletedAt}
	if c.Result != nil {
		out.Result = &wire.CommandResult{Status: c.Result.Status, Output: c.Result.Output}
	}
	return out
}

func commandsOut(cs []store.Command) []wire.Command {
	out := make([]wire.Command, len(cs))
	for i, c := range cs {
		out[i] = commandOut(c)
	}
	return out
}
