package jobs

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// HandleMessage takes a device request from the bus. It runs on the
// publisher's goroutine: it only checks the topic and enqueues; a full
// queue is answered RequestThrottled (off this goroutine).
func (s *Service) HandleMessage(m core.Message) {
	prefix, r, ok := ParseTopic(m.Topic)
	if !ok {
		return
	}
	if m.Thing != r.Thing {
		// The policies keep a thing to its own topics; a platform
		// message or another thing's is not a request.
		if m.Thing != "" {
			s.m.dropped.WithLabelValues("wrong_thing").Inc()
			s.limiter.log(s.log, "wrong_thing", "job request for another thing ignored", "thing", m.Thing, "topic_thing", r.Thing)
		}
		return
	}
	r.Payload = m.Payload
	msg := deviceMsg{prefix: prefix, req: r}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.m.dropped.WithLabelValues("closed").Inc()
		return
	}
	select {
	case s.shards[shardOf(r.Thing, len(s.shards))] <- msg:
	default:
		s.m.dropped.WithLabelValues("queue_full").Inc()
		s.limiter.log(s.log, "queue_full", "job request queue full; answering RequestThrottled (--job-queue)", "thing", r.Thing)
		select {
		case s.rejects <- msg:
		default:
			s.m.dropped.WithLabelValues("reject_queue_full").Inc()
		}
	}
}

func (s *Service) deviceLoop(ch chan deviceMsg) {
	for {
		select {
		case <-s.stop:
			return
		case msg := <-ch:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			answer, rej := s.Device(ctx, msg.req)
			cancel()
			s.answer(msg, answer, rej)
		}
	}
}

func (s *Service) rejectLoop() {
	for {
		select {
		case <-s.stop:
			return
		case msg := <-s.rejects:
			s.answer(msg, nil, &Rejection{Code: CodeRequestThrottled, Message: "too many job requests; retry later", ClientToken: clientTokenOf(msg.req.Payload)})
		}
	}
}

func (s *Service) answer(msg deviceMsg, answer any, rej *Rejection) {
	var body any = answer
	if rej != nil {
		body = rej.JSON(s.now())
	}
	b, err := json.Marshal(body)
	if err != nil {
		return
	}
	s.publish(ResponseTopic(msg.prefix, msg.req, rej == nil), b)
}

func (s *Service) publish(topic string, body []byte) {
	if s.opts.Publisher == nil {
		return
	}
	if err := s.opts.Publisher.Publish(topic, body, false, 1); err != nil && core.KindOf(err) != core.KindUnavailable {
		s.limiter.log(s.log, "publish", "job publish failed", "topic", topic, "error", err)
	}
}

// Rejection is a refused device request.
type Rejection struct {
	Code        string
	Message     string
	ClientToken string
	State       *StateJSON
}

// JSON is the body of the /rejected answer.
func (r *Rejection) JSON(now time.Time) ErrorJSON {
	return ErrorJSON{Code: r.Code, Message: r.Message, ClientToken: r.ClientToken, Timestamp: now.Unix(), ExecutionState: r.State}
}

// Kind maps the AWS error code to a core error kind (the HTTP status of
// the device API).
func (r *Rejection) Kind() core.Kind {
	switch r.Code {
	case CodeResourceNotFound:
		return core.KindNotFound
	case CodeVersionMismatch, CodeInvalidStateTransition, CodeTerminalStateReached:
		return core.KindConflict
	case CodeRequestThrottled:
		return core.KindRateLimited
	case CodeInternalError:
		return core.KindInternal
	}
	return core.KindInvalid
}

func reject(e *RequestError, token string) *Rejection {
	return &Rejection{Code: e.Code, Message: e.Message, ClientToken: token}
}

// Device answers one device request: the accepted body, or a rejection.
func (s *Service) Device(ctx context.Context, r DeviceRequest) (any, *Rejection) {
	answer, rej := s.device(ctx, r)
	result := "accepted"
	if rej != nil {
		result = "rejected"
	}
	s.m.requests.WithLabelValues(r.Op, result).Inc()
	return answer, rej
}

func (s *Service) device(ctx context.Context, r DeviceRequest) (any, *Rejection) {
	switch r.Op {
	case OpGetPending:
		var q GetPendingRequest
		if e := decodeRequest(r.Payload, &q); e != nil {
			return nil, reject(e, clientTokenOf(r.Payload))
		}
		if e := checkToken(q.ClientToken); e != nil {
			return nil, reject(e, "")
		}
		inProg, queued, err := s.pending(ctx, r.Thing)
		if err != nil {
			return nil, s.internal(err, q.ClientToken)
		}
		a := PendingJSON{InProgressJobs: []SummaryJSON{}, QueuedJobs: []SummaryJSON{}, Timestamp: s.now().Unix(), ClientToken: q.ClientToken}
		for _, x := range inProg {
			a.InProgressJobs = append(a.InProgressJobs, summaryOf(x))
		}
		for _, x := range queued {
			a.QueuedJobs = append(a.QueuedJobs, summaryOf(x))
		}
		return a, nil
	case OpStartNext:
		var q StartNextRequest
		if e := decodeRequest(r.Payload, &q); e != nil {
			return nil, reject(e, clientTokenOf(r.Payload))
		}
		for _, e := range []*RequestError{checkToken(q.ClientToken), checkDetails(q.StatusDetails), checkStep(q.StepTimeoutInMinutes)} {
			if e != nil {
				return nil, reject(e, clientTokenOf(r.Payload))
			}
		}
		return s.startNext(ctx, r.Thing, q)
	case OpDescribe:
		var q DescribeRequest
		if e := decodeRequest(r.Payload, &q); e != nil {
			return nil, reject(e, clientTokenOf(r.Payload))
		}
		if e := checkToken(q.ClientToken); e != nil {
			return nil, reject(e, "")
		}
		return s.describe(ctx, r.Thing, r.JobID, q)
	case OpUpdate:
		q, e := ParseUpdate(r.Payload)
		if e != nil {
			return nil, reject(e, clientTokenOf(r.Payload))
		}
		return s.update(ctx, r.Thing, r.JobID, q)
	}
	return nil, &Rejection{Code: CodeInvalidTopic, Message: "unknown job operation"}
}

func (s *Service) internal(err error, token string) *Rejection {
	s.limiter.log(s.log, "device", "job request failed", "error", err)
	return &Rejection{Code: CodeInternalError, Message: "the request could not be handled; retry later", ClientToken: token}
}

// pending returns a thing's IN_PROGRESS and QUEUED executions, oldest
// first.
func (s *Service) pending(ctx context.Context, thing string) (inProg, queued []store.JobExecution, err error) {
	list, err := s.st.Executions(ctx, store.JobExecutionFilter{Thing: thing, Statuses: []string{store.JobExecQueued, store.JobExecInProgress}, Limit: 1000})
	if err != nil {
		return nil, nil, err
	}
	for _, x := range list {
		if x.Status == store.JobExecInProgress {
			inProg = append(inProg, x)
		} else {
			queued = append(queued, x)
		}
	}
	return inProg, queued, nil
}

// next is a thing's next pending execution: the oldest IN_PROGRESS, else
// the oldest QUEUED (ok false: none).
func (s *Service) next(ctx context.Context, thing string) (store.JobExecution, bool, error) {
	inProg, queued, err := s.pending(ctx, thing)
	if err != nil {
		return store.JobExecution{}, false, err
	}
	if len(inProg) > 0 {
		return inProg[0], true, nil
	}
	if len(queued) > 0 {
		return queued[0], true, nil
	}
	return store.JobExecution{}, false, nil
}

// document returns the job document of an execution, placeholders
// expanded for its thing.
func (s *Service) document(ctx context.Context, x store.JobExecution) (json.RawMessage, error) {
	e, err := s.entry(ctx, x.JobID)
	if err != nil {
		return nil, err
	}
	return expandDocument(ctx, e.doc, x.Thing, s.opts.Artifacts)
}

// deadline is when an IN_PROGRESS execution times out: the job's
// inProgressMinutes after it started, or a step timer the device set
// (the earlier of the two); a step timer stays until it is reset.
func (s *Service) deadline(ctx context.Context, x store.JobExecution, step *int64, now time.Time) *time.Time {
	t := x.TimeoutAt
	if step != nil {
		v := now.Add(time.Duration(*step) * time.Minute)
		t = &v
	}
	if e, err := s.entry(ctx, x.JobID); err == nil && e.spec.Timeouts != nil && x.StartedAt != nil {
		v := x.StartedAt.Add(time.Duration(e.spec.Timeouts.InProgressMinutes) * time.Minute)
		if t == nil || v.Before(*t) {
			t = &v
		}
	}
	return t
}

func (s *Service) startNext(ctx context.Context, thing string, q StartNextRequest) (any, *Rejection) {
	for range 3 {
		x, ok, err := s.next(ctx, thing)
		if err != nil {
			return nil, s.internal(err, q.ClientToken)
		}
		now := s.now()
		if !ok {
			return ExecutionAnswerJSON{Timestamp: now.Unix(), ClientToken: q.ClientToken}, nil
		}
		if x.Status == store.JobExecQueued {
			n := x
			n.Status, n.StartedAt, n.LastUpdatedAt = store.JobExecInProgress, &now, now
			if q.StatusDetails != nil {
				n.StatusDetails = q.StatusDetails
			}
			n.TimeoutAt = s.deadline(ctx, n, q.StepTimeoutInMinutes, now)
			got, err := s.st.UpdateExecution(ctx, n, x.VersionNumber)
			if core.KindOf(err) == core.KindConflict {
				continue
			}
			if err != nil {
				return nil, s.internal(err, q.ClientToken)
			}
			x = got
			s.m.executions.WithLabelValues(store.JobExecInProgress).Inc()
			s.executionEvent(x)
			s.notifyThings([]string{thing})
		}
		doc, err := s.document(ctx, x)
		if err != nil {
			return nil, s.internal(err, q.ClientToken)
		}
		return ExecutionAnswerJSON{Execution: executionOf(x, doc, now), Timestamp: now.Unix(), ClientToken: q.ClientToken}, nil
	}
	return nil, &Rejection{Code: CodeRequestThrottled, Message: "the next execution changed while it was started; retry", ClientToken: q.ClientToken}
}

func (s *Service) describe(ctx context.Context, thing, jobID string, q DescribeRequest) (any, *Rejection) {
	now := s.now()
	var (
		x   store.JobExecution
		err error
	)
	if jobID == NextJobID {
		var ok bool
		x, ok, err = s.next(ctx, thing)
		if err == nil && !ok {
			return ExecutionAnswerJSON{Timestamp: now.Unix(), ClientToken: q.ClientToken}, nil
		}
	} else {
		x, err = s.visible(ctx, jobID, thing)
	}
	if err != nil {
		return nil, s.lookupRejection(err, jobID, q.ClientToken)
	}
	if q.ExecutionNumber != nil && *q.ExecutionNumber != x.ExecutionNumber {
		return nil, &Rejection{Code: CodeResourceNotFound, Message: "no such execution number of job " + jobID, ClientToken: q.ClientToken}
	}
	var doc json.RawMessage
	if q.IncludeJobDocument == nil || *q.IncludeJobDocument {
		if doc, err = s.document(ctx, x); err != nil {
			return nil, s.internal(err, q.ClientToken)
		}
	}
	return ExecutionAnswerJSON{Execution: executionOf(x, doc, now), Timestamp: now.Unix(), ClientToken: q.ClientToken}, nil
}

// visible returns an execution its device may see (released).
func (s *Service) visible(ctx context.Context, jobID, thing string) (store.JobExecution, error) {
	if core.ValidateName("jobId", jobID) != nil {
		return store.JobExecution{}, core.NotFound("job execution", jobID+"/"+thing)
	}
	x, err := s.st.Execution(ctx, jobID, thing)
	if err == nil && x.Status == store.JobExecScheduled {
		return store.JobExecution{}, core.NotFound("job execution", jobID+"/"+thing)
	}
	return x, err
}

func (s *Service) lookupRejection(err error, jobID, token string) *Rejection {
	if core.IsNotFound(err) {
		return &Rejection{Code: CodeResourceNotFound, Message: "no execution of job " + jobID + " for this thing", ClientToken: token}
	}
	return s.internal(err, token)
}

func terminal(status string) bool {
	switch status {
	case store.JobExecQueued, store.JobExecInProgress, store.JobExecScheduled:
		return false
	}
	return true
}

func (s *Service) update(ctx context.Context, thing, jobID string, q UpdateRequest) (any, *Rejection) {
	if jobID == NextJobID {
		return nil, &Rejection{Code: CodeInvalidRequest, Message: "$next cannot be updated; name the job", ClientToken: q.ClientToken}
	}
	x, err := s.visible(ctx, jobID, thing)
	if err != nil {
		return nil, s.lookupRejection(err, jobID, q.ClientToken)
	}
	if q.ExecutionNumber != nil && *q.ExecutionNumber != x.ExecutionNumber {
		return nil, &Rejection{Code: CodeResourceNotFound, Message: "no such execution number of job " + jobID, ClientToken: q.ClientToken}
	}
	if terminal(x.Status) {
		return nil, &Rejection{Code: CodeTerminalStateReached, Message: "the execution is " + x.Status, ClientToken: q.ClientToken, State: stateOf(x)}
	}
	if q.ExpectedVersion != nil && *q.ExpectedVersion != x.VersionNumber {
		return nil, &Rejection{Code: CodeVersionMismatch, Message: "the execution's version is not the expected one", ClientToken: q.ClientToken, State: stateOf(x)}
	}
	now := s.now()
	n := x
	n.Status, n.LastUpdatedAt = q.Status, now
	if q.StatusDetails != nil {
		n.StatusDetails = q.StatusDetails
	}
	if q.Status == store.JobExecInProgress {
		if n.StartedAt == nil {
			n.StartedAt = &now
		}
		n.TimeoutAt = s.deadline(ctx, n, q.StepTimeoutInMinutes, now)
	} else {
		n.TimeoutAt = nil
	}
	got, err := s.st.UpdateExecution(ctx, n, x.VersionNumber)
	if core.KindOf(err) == core.KindConflict {
		return nil, &Rejection{Code: CodeVersionMismatch, Message: "the execution changed meanwhile", ClientToken: q.ClientToken, State: stateOf(got)}
	}
	if err != nil {
		return nil, s.internal(err, q.ClientToken)
	}
	if got.Status != x.Status {
		s.m.executions.WithLabelValues(got.Status).Inc()
		s.executionEvent(got)
	}
	a := UpdateAnswerJSON{Timestamp: now.Unix(), ClientToken: q.ClientToken}
	if q.IncludeJobExecutionState {
		a.ExecutionState = stateOf(got)
	}
	if q.IncludeJobDocument {
		if a.JobDocument, err = s.document(ctx, got); err != nil {
			return nil, s.internal(err, q.ClientToken)
		}
	}
	if got.Status == store.JobExecFailed {
		if e, err := s.entry(ctx, got.JobID); err == nil {
			s.retry(ctx, e, got)
		}
	}
	if got.Status != x.Status {
		s.notifyThings([]string{thing})
		if terminal(got.Status) {
			s.wake() // abort criteria, completion
		}
	}
	return a, nil
}

// --- notifications and events ---

func (s *Service) notifyThings(things []string) {
	for _, t := range things {
		if !s.notify.add(t) {
			s.m.dropped.WithLabelValues("notify_queue_full").Inc()
		}
	}
}

func (s *Service) notifyLoop() {
	for {
		select {
		case <-s.stop:
			return
		case <-s.notify.signal:
		}
		for _, thing := range s.notify.take(1000) {
			select {
			case <-s.stop:
				return
			default:
			}
			if err := s.notifyThing(context.Background(), thing); err != nil {
				s.limiter.log(s.log, "notify", "job notification failed", "thing", thing, "error", err)
			}
		}
		if s.notify.len() > 0 {
			s.notify.poke()
		}
	}
}

// notifyThing publishes notify when the thing's pending executions
// changed and notify-next when its next one did, under both prefixes.
func (s *Service) notifyThing(ctx context.Context, thing string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	inProg, queued, err := s.pending(ctx, thing)
	if err != nil {
		return err
	}
	now := s.now()
	n := NotifyJSON{Timestamp: now.Unix(), Jobs: map[string][]SummaryJSON{}}
	sig := notifySig{}
	for _, x := range inProg {
		n.Jobs[store.JobExecInProgress] = append(n.Jobs[store.JobExecInProgress], summaryOf(x))
		sig.notify += x.JobID + ":" + x.Status + ";"
	}
	for _, x := range queued {
		n.Jobs[store.JobExecQueued] = append(n.Jobs[store.JobExecQueued], summaryOf(x))
		sig.notify += x.JobID + ":" + x.Status + ";"
	}
	var next *store.JobExecution
	if len(inProg) > 0 {
		next = &inProg[0]
	} else if len(queued) > 0 {
		next = &queued[0]
	}
	if next != nil {
		// Which execution is next, not its status: a device that
		// started it hears of it once.
		sig.next = next.JobID + ":" + strconv.FormatInt(next.ExecutionNumber, 10)
	}
	s.sigMu.Lock()
	old, had := s.sigs[thing]
	if sig == (notifySig{}) {
		delete(s.sigs, thing)
	} else {
		s.sigs[thing] = sig
	}
	s.sigMu.Unlock()
	if !had && sig == (notifySig{}) {
		// Nothing pending, and nothing was: the last notification
		// (if any, before a restart) said so already or never mattered.
		old = notifySig{notify: "?", next: "?"}
	}
	if sig.notify != old.notify {
		b, _ := json.Marshal(n)
		s.publish(NotifyTopic(AWSPrefix, thing), b)
		s.publish(NotifyTopic(MotePrefix, thing), b)
	}
	if sig.next != old.next {
		nn := NotifyNextJSON{Timestamp: now.Unix()}
		if next != nil {
			doc, err := s.document(ctx, *next)
			if err != nil {
				return err
			}
			nn.Execution = executionOf(*next, doc, now)
		}
		b, _ := json.Marshal(nn)
		s.publish(NotifyNextTopic(AWSPrefix, thing), b)
		s.publish(NotifyNextTopic(MotePrefix, thing), b)
	}
	return nil
}

// JobEventTopic is where the platform announces a job's changes;
// ExecutionEventTopic an execution's.
func JobEventTopic(id string) string { return "$mote/events/jobs/" + id }

func ExecutionEventTopic(id, thing string) string { return JobEventTopic(id) + "/things/" + thing }

// JobEvent is the body of an event on JobEventTopic.
type JobEvent struct {
	Event      string    `json:"event"` // created, canceled, aborted, completed, deleted
	Time       time.Time `json:"time"`
	JobID      string    `json:"jobId"`
	Status     string    `json:"status"`
	ReasonCode string    `json:"reasonCode,omitempty"`
}

// ExecutionEvent is the body of an event on ExecutionEventTopic.
type ExecutionEvent struct {
	Event           string    `json:"event"` // the new status
	Time            time.Time `json:"time"`
	JobID           string    `json:"jobId"`
	ThingName       string    `json:"thingName"`
	ExecutionNumber int64     `json:"executionNumber"`
	VersionNumber   int64     `json:"versionNumber"`
}

func (s *Service) jobEvent(j store.Job, event string) {
	b, _ := json.Marshal(JobEvent{Event: event, Time: s.now(), JobID: j.ID, Status: j.Status, ReasonCode: j.ReasonCode})
	s.publish(JobEventTopic(j.ID), b)
}

func (s *Service) executionEvent(x store.JobExecution) {
	b, _ := json.Marshal(ExecutionEvent{Event: x.Status, Time: s.now(), JobID: x.JobID, ThingName: x.Thing, ExecutionNumber: x.ExecutionNumber, VersionNumber: x.VersionNumber})
	s.publish(ExecutionEventTopic(x.JobID, x.Thing), b)
}
