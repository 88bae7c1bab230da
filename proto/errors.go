package proto

import "errors"

var (
	// ErrVersion is returned for a message or id of a version this build does not know.
	ErrVersion = errors.New("unknown version")
	// ErrTruncated is returned when input ends inside a field.
	ErrTruncated = errors.New("truncated input")
	// ErrTooLarge is returned when a length or count exceeds its limit.
	ErrTooLarge = errors.New("field too large")
	// ErrMalformed is returned for input that is not of the expected form.
	ErrMalformed = errors.New("malformed input")
)
