package core

// PageAfter returns up to limit rows after the cursor after, and the
// cursor of the next page ("" when there is none). list(after, n) must
// return at most n rows with keys greater than after, ordered by key; key
// is a row's cursor. limit <= 0 means 100.
//
// The stores cap a list at 1000 rows, so asking for limit+1 rows to learn
// whether more follow would lose the cursor of a full page at limit=1000.
// PageAfter asks for limit rows and, only when it got all of them, for one
// row after the last.
func PageAfter[T any](after string, limit int, list func(after string, n int) ([]T, error), key func(T) string) ([]T, string, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := list(after, limit)
	if err != nil {
		return nil, "", err
	}
	if len(rows) < limit {
		return rows, "", nil
	}
	rows = rows[:limit]
	last := key(rows[limit-1])
	more, err := list(last, 1)
	if err != nil {
		return nil, "", err
	}
	if len(more) == 0 {
		return rows, "", nil
	}
	return rows, last, nil
}
