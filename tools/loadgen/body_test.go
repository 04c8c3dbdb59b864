package main

import "testing"

func TestCheckBody(t *testing.T) {
	logs := Expect{Kind: "logs", Source: "postgresql", Limit: 100}
	agg := Expect{Kind: "aggregate", Source: "hdfs"}
	row := `{"id":1,"timestamp":1.5,"level":"INFO","service":"api-gateway"}`
	cases := []struct {
		exp  Expect
		path string
		body string
		ok   bool
	}{
		{logs, "/l?limit=100", `{"source":"postgresql","returned_count":1,"data":[` + row + `]}`, true},
		{logs, "/l?limit=100", `{"source":"postgresql","returned_count":0,"data":[]}`, true},
		{logs, "/l?limit=100", `{"source":"hdfs","returned_count":1,"data":[` + row + `]}`, false},
		{logs, "/l?limit=100", `{"source":"postgresql","returned_count":2,"data":[` + row + `]}`, false},
		{logs, "/l?limit=1", `{"source":"postgresql","returned_count":2,"data":[` + row + `,` + row + `]}`, false},
		{logs, "/l?limit=100", `{"source":"postgresql","returned_count":1,"data":[{"id":null,"timestamp":1,"level":"INFO"}]}`, false},
		{logs, "/l?limit=100", `{"source":"postgresql","returned_count":1,"data":[{"id":1,"level":"INFO"}]}`, false},
		{logs, "/l?limit=100", `{"source":"postgresql","returned_count":0,"data":null}`, false},
		{logs, "/l?limit=100", `[]`, false},
		{logs, "/l?limit=100", `<html>`, false},
		{agg, "/a?group_by=level", `{"source":"hdfs","group_by":"level","data":[{"key":"INFO","count":70},{"key":"ERROR","count":5}]}`, true},
		{agg, "/a?group_by=level", `{"source":"hdfs","group_by":"host","data":[]}`, false},
		{agg, "/a?group_by=level", `{"source":"hdfs","group_by":"level","data":[{"key":"INFO","count":5},{"key":"ERROR","count":70}]}`, false},
		{agg, "/a?group_by=level", `{"source":"hdfs","group_by":"level","data":[{"key":"INFO"}]}`, false},
		{agg, "/a?group_by=level", `{"source":"hdfs","group_by":"level"}`, false},
		{Expect{}, "/x", `{"anything":true}`, true},
		{Expect{}, "/x", `not json`, false},
		{Expect{Kind: "any"}, "/x", `not json`, true},
	}
	for i, c := range cases {
		err := CheckBody(c.exp, c.path, []byte(c.body))
		if (err == nil) != c.ok {
			t.Errorf("case %d (%s %s): err=%v, want ok=%v", i, c.exp.Kind, c.body, err, c.ok)
		}
	}
}
