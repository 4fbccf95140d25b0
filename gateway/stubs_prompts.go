package gateway

// Prompt, legacy chat and docs handlers still being written (they replace
// this file).

func (s *Server) handleDocsSearch(c *call) error { return errorf(501, "not implemented", nil) }
func (s *Server) handlePrompt(c *call) error     { return errorf(501, "not implemented", nil) }
func (s *Server) handlePromptV2(c *call) error   { return errorf(501, "not implemented", nil) }
func (s *Server) handleLegacyChat(c *call) error { return errorf(501, "not implemented", nil) }
