module fletch/tools/loadgen

go 1.22
