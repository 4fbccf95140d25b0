// Command static is a small static binary the image tests put in place of
// the appliance (building the appliance takes far longer).
package main

import "fmt"

func main() { fmt.Println("static test binary") }
