package gateway

// Code suggestion handlers still being written (they replace this file).

func (s *Server) handleCompletions(c *call) error   { return errorf(501, "not implemented", nil) }
func (s *Server) handleGenerationsV2(c *call) error { return errorf(501, "not implemented", nil) }
func (s *Server) handleSuggestionsV3(c *call) error { return errorf(501, "not implemented", nil) }
func (s *Server) handleSuggestionsV4(c *call) error { return errorf(501, "not implemented", nil) }
