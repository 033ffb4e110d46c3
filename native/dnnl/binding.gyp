{
  "targets": [
    {
      "target_name": "sortednet_dnnl",
      "sources": ["dnnl.c"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-fopenmp"],
      "libraries": ["-ldnnl", "-lgomp", "-lpthread"]
    }
  ]
}
