package gateway

// Handlers still being written; each moves to its own file.

func (s *Server) handleCompletions(c *call) error   { return errorf(501, "not implemented", nil) }
func (s *Server) handleGenerationsV2(c *call) error { return errorf(501, "not implemented", nil) }
func (s *Server) handleSuggestionsV3(c *call) error { return errorf(501, "not implemented", nil) }
func (s *Server) handleSuggestionsV4(c *call) error { return errorf(501, "not implemented", nil) }
func (s *Server) handleChatAgent(c *call) error     { return errorf(501, "not implemented", nil) }
func (s *Server) handleDocsSearch(c *call) error    { return errorf(501, "not implemented", nil) }
func (s *Server) handlePrompt(c *call) error        { return errorf(501, "not implemented", nil) }
func (s *Server) handlePromptV2(c *call) error      { return errorf(501, "not implemented", nil) }
func (s *Server) handleLegacyChat(c *call) error    { return errorf(501, "not implemented", nil) }
