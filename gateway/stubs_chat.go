package gateway

// The Duo Chat handler still being written (it replaces this file).

func (s *Server) handleChatAgent(c *call) error { return errorf(501, "not implemented", nil) }
