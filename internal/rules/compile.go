package rules

import "fmt"

// evalFn evaluates a compiled expression against a message. Evaluation
// errors (failed casts) are recorded in the message, not returned, so
// that the common path carries no error value.
type evalFn func(m *Message) Value

func compile(e expr) evalFn {
	switch e := e.(type) {
	case *literal:
		v := e.v
		return func(*Message) Value { return v }
	case *starExpr:
		return (*Message).Payload
	case *pathExpr:
		return compilePath(e)
	case *unaryExpr:
		x := compile(e.x)
		if e.op == "NOT" {
			return func(m *Message) Value { return not(x(m)) }
		}
		return func(m *Message) Value { return negate(x(m)) }
	case *binaryExpr:
		return compileBinary(e)
	case *isNullExpr:
		x, not := compile(e.x), e.not
		return func(m *Message) Value { return boolValue(x(m).isUnknown() != not) }
	case *inExpr:
		return compileIn(e)
	case *betweenExpr:
		return compileBetween(e)
	case *caseExpr:
		return compileCase(e)
	case *callExpr:
		return compileCall(e)
	case *aggExpr:
		i := e.idx
		return func(m *Message) Value { return m.aggs[i] }
	case *windowFnExpr:
		if e.name == "window_start" {
			return func(m *Message) Value { return intValue(m.winStart) }
		}
		return func(m *Message) Value { return intValue(m.winEnd) }
	case *castExpr:
		x, typ, pos := compile(e.x), e.typ, e.pos
		return func(m *Message) Value {
			v := x(m)
			if v.isUnknown() {
				return v
			}
			r, msg := castTo(v, typ)
			if msg != "" {
				m.fail(pos, msg)
			}
			return r
		}
	}
	panic(fmt.Sprintf("rules: cannot compile %T", e))
}

// step is a compiled path step: a key, a constant index, or an index
// computed per message.
type step struct {
	key   string
	isKey bool
	index int64
	expr  evalFn // non-nil: the index or key is computed
}

// propertiesName is the name under which a rule reads the message's user
// properties: properties.NAME.
const propertiesName = "properties"

func compilePath(e *pathExpr) evalFn {
	if e.base == nil && len(e.steps) >= 2 && e.steps[0].index == nil && e.steps[0].key == propertiesName &&
		e.steps[1].index == nil {
		return compileProperty(e)
	}
	return compilePayloadPath(e)
}

// compileProperty compiles properties.NAME[...]: the message's user
// property NAME, a string. When the message has no property NAME it is the
// payload's field properties.NAME, so that rules over payloads with a
// "properties" object read what they always read.
func compileProperty(e *pathExpr) evalFn {
	key, more := e.steps[1].key, len(e.steps) > 2
	payload := compilePayloadPath(e)
	return func(m *Message) Value {
		v, ok := m.property(key)
		switch {
		case !ok:
			return payload(m)
		case more:
			return undefined // a property is a string: it has no fields or elements
		}
		return stringValue(v)
	}
}

func compilePayloadPath(e *pathExpr) evalFn {
	steps := make([]step, len(e.steps))
	dynamic := false
	for i, s := range e.steps {
		switch {
		case s.index == nil:
			steps[i] = step{key: s.key, isKey: true}
		default:
			if v, ok := constant(s.index); ok && v.kind == KindInt {
				steps[i] = step{index: v.Int()}
			} else {
				steps[i] = step{expr: compile(s.index)}
				dynamic = true
			}
		}
	}
	var base evalFn = (*Message).Payload
	if e.base != nil {
		base = compile(e.base)
	}
	if e.base == nil && len(steps) == 1 { // the most common case: a top-level field
		key := steps[0].key
		return func(m *Message) Value { return m.Payload().Get(key) }
	}
	if !dynamic {
		return func(m *Message) Value {
			v := base(m)
			for i := range steps {
				if v = applyStep(v, &steps[i]); v.kind == KindUndefined {
					break
				}
			}
			return v
		}
	}
	return func(m *Message) Value {
		v := base(m)
		for i := range steps {
			s := &steps[i]
			if s.expr != nil {
				// The index is evaluated even when v is already undefined,
				// so that errors in it are not hidden.
				idx := s.expr(m)
				switch idx.kind {
				case KindString:
					v = v.Get(idx.str)
				case KindInt:
					v = index(v, idx.Int())
				default:
					v = undefined
				}
				continue
			}
			v = applyStep(v, s)
		}
		return v
	}
}

func applyStep(v Value, s *step) Value {
	if s.isKey {
		return v.Get(s.key)
	}
	return index(v, s.index)
}

// index returns element i of an array, counting from the end when i is
// negative (-1 is the last), or undefined.
func index(v Value, i int64) Value {
	if v.kind != KindArray {
		return undefined
	}
	n := int64(v.Len())
	if i < 0 {
		i += n
	}
	if i < 0 || i >= n {
		return undefined
	}
	return v.Index(int(i))
}

func compileBinary(e *binaryExpr) evalFn {
	l, r := compile(e.l), compile(e.r)
	switch e.op {
	case "AND":
		return func(m *Message) Value {
			a := l(m)
			if isFalse(a) {
				return falseVal
			}
			b := r(m)
			switch {
			case isFalse(b):
				return falseVal
			case isTrue(a) && isTrue(b):
				return trueVal
			}
			return logicUnknown(a, b)
		}
	case "OR":
		return func(m *Message) Value {
			a := l(m)
			if isTrue(a) {
				return trueVal
			}
			b := r(m)
			switch {
			case isTrue(b):
				return trueVal
			case isFalse(a) && isFalse(b):
				return falseVal
			}
			return logicUnknown(a, b)
		}
	case "+", "-", "*", "/", "%":
		op := e.op[0]
		return func(m *Message) Value { return arith(op, l(m), r(m)) }
	}
	op := e.op
	if c, ok := constant(e.r); ok && c.isNumber() {
		// column <op> number, as in WHERE temp > 50
		return func(m *Message) Value {
			a := l(m)
			if a.isNumber() {
				return boolValue(cmpResult(op, cmpNumbers(a, c)))
			}
			return compare(op, a, c)
		}
	}
	return func(m *Message) Value { return compare(op, l(m), r(m)) }
}

func cmpResult(op string, c int) bool {
	switch op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	}
	return c >= 0
}

func compileIn(e *inExpr) evalFn {
	x := compile(e.x)
	list := make([]evalFn, len(e.list))
	for i, y := range e.list {
		list[i] = compile(y)
	}
	neg := e.not
	return func(m *Message) Value {
		v := x(m)
		if v.isUnknown() {
			return v
		}
		result := falseVal
		for _, f := range list {
			w := f(m)
			if w.isUnknown() {
				if result.kind != KindUndefined {
					result = w
				}
				continue
			}
			if equal(v, w) {
				result = trueVal
				break
			}
		}
		if neg {
			return not(result)
		}
		return result
	}
}

func compileBetween(e *betweenExpr) evalFn {
	x, lo, hi, neg := compile(e.x), compile(e.lo), compile(e.hi), e.not
	return func(m *Message) Value {
		v := x(m)
		a, b := compare(">=", v, lo(m)), compare("<=", v, hi(m))
		var result Value
		switch {
		case isFalse(a) || isFalse(b):
			result = falseVal
		case isTrue(a) && isTrue(b):
			result = trueVal
		default:
			result = logicUnknown(a, b)
		}
		if neg {
			return not(result)
		}
		return result
	}
}

func compileCase(e *caseExpr) evalFn {
	type when struct{ cond, result evalFn }
	whens := make([]when, len(e.whens))
	for i, w := range e.whens {
		whens[i] = when{compile(w.cond), compile(w.result)}
	}
	els := func(*Message) Value { return undefined }
	if e.els != nil {
		els = compile(e.els)
	}
	if e.operand == nil {
		return func(m *Message) Value {
			for _, w := range whens {
				if isTrue(w.cond(m)) {
					return w.result(m)
				}
			}
			return els(m)
		}
	}
	operand := compile(e.operand)
	return func(m *Message) Value {
		v := operand(m)
		for _, w := range whens {
			if isTrue(compare("=", v, w.cond(m))) {
				return w.result(m)
			}
		}
		return els(m)
	}
}

func compileCall(e *callExpr) evalFn {
	d := e.def
	args := make([]evalFn, len(e.args))
	for i, a := range e.args {
		args[i] = compile(a)
	}
	switch {
	case d.build != nil:
		return d.build(args, e)
	case d.f0 != nil:
		return d.f0
	case len(args) == 1:
		f, a := d.f1, args[0]
		return func(m *Message) Value {
			x := a(m)
			if x.isUnknown() {
				return x
			}
			return f(x)
		}
	case len(args) == 2:
		f, a, b := d.f2, args[0], args[1]
		return func(m *Message) Value {
			x, y := a(m), b(m)
			if x.isUnknown() || y.isUnknown() {
				return unknown(x, y)
			}
			return f(x, y)
		}
	default:
		f, a, b, c := d.f3, args[0], args[1], args[2]
		return func(m *Message) Value {
			x, y, z := a(m), b(m), c(m)
			if x.isUnknown() || y.isUnknown() || z.isUnknown() {
				return unknown(unknown(x, y), z)
			}
			return f(x, y, z)
		}
	}
}
