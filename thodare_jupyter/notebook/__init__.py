"""The notebook side: magics, the DAG and run widgets, and the static SVG picture of a DAG."""
