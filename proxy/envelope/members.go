package envelope

// RawMember returns the raw JSON text of the top-level member name of the
// object body (nil when absent), after validating the whole body as one JSON
// object without duplicate keys. It lets the proxy read "model" and
// "stream" with the same single scanner that encryption uses, instead of a
// second full decode.
func RawMember(body []byte, names ...string) ([][]byte, error) {
	sc := getScratch()
	defer putScratch(sc)
	if err := scanObject(body, sc); err != nil {
		return nil, err
	}
	if err := sc.sortMembers(); err != nil {
		return nil, err
	}
	out := make([][]byte, len(names))
	for i, n := range names {
		if m := sc.findMember(n); m != nil {
			out[i] = body[m.valStart:m.valEnd]
		}
	}
	return out, nil
}
