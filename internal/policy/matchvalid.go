package policy

// MatchValid is MatchFilter for a filter and a topic already checked with
// ValidTopicFilter and ValidTopicName: it skips both checks, for callers
// that match one topic against many filters checked once (the bus). On
// other input it returns some answer and never panics.
func MatchValid(filter, topic string) bool { return match(filter, topic) }
