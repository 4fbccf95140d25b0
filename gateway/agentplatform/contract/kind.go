package contract

// Kind is the name of the action's oneof case ("runHTTPRequest",
// "newCheckpoint", …), for logs and metric labels; "none" when unset.
func (a *Action) Kind() string {
	if a == nil || a.Action == nil {
		return "none"
	}
	m := a.ProtoReflect()
	return string(m.WhichOneof(m.Descriptor().Oneofs().ByName("action")).Name())
}
