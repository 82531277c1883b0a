package fib_test

import (
	"fmt"
	"net/netip"

	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

func ExampleRoute_String() {
	r := fib.Route{
		Dst:      netip.MustParsePrefix("10.244.104.0/26"),
		Type:     fib.Unicast,
		Gateway:  netip.MustParseAddr("192.168.50.11"),
		Dev:      "tunl0",
		Protocol: fib.ProtoBird,
		OnLink:   true,
	}
	fmt.Println(r)
	// Output: 10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink
}

func ExampleParse() {
	r, err := fib.Parse("10.244.166.128 dev cali717821d73f3 scope link")
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Dst, r.Dev, r.Protocol, r.Scope)

	_, err = fib.Parse("10.244.0.0/33 dev x")
	fmt.Println(err)
	// Output:
	// 10.244.166.128/32 cali717821d73f3 boot link
	// parse route "10.244.0.0/33 dev x": bad destination "10.244.0.0/33"
}

func ExampleTable_Lookup() {
	routes, err := fib.ParseAll(`
blackhole 10.244.166.128/26 proto bird
10.244.166.128 dev cali717821d73f3 scope link
default via 192.168.50.1 dev ens33 proto static metric 100
`)
	if err != nil {
		panic(err)
	}
	t := fib.NewTable()
	for _, r := range routes {
		if err := t.Insert(r); err != nil {
			panic(err)
		}
	}
	fmt.Print(fib.Format(t.Routes()))
	for _, a := range []string{"10.244.166.128", "10.244.166.130", "8.8.8.8"} {
		r, _ := t.Lookup(netip.MustParseAddr(a))
		fmt.Printf("%s: %s\n", a, r)
	}
	// Output:
	// default via 192.168.50.1 dev ens33 proto static metric 100
	// 10.244.166.128 dev cali717821d73f3 scope link
	// blackhole 10.244.166.128/26 proto bird
	// 10.244.166.128: 10.244.166.128 dev cali717821d73f3 scope link
	// 10.244.166.130: blackhole 10.244.166.128/26 proto bird
	// 8.8.8.8: default via 192.168.50.1 dev ens33 proto static metric 100
}
