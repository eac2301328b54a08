package client

// KnownEndpoints lists the endpoints c would try, for the tests of package
// client_test: the configured ones and the members it learned.
func KnownEndpoints(c *Client) []string { return c.eps.order() }
