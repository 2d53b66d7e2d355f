"""Pictures of workflows and runs as plain data and SVG: the layout, the static SVG,
the status colours and for_each progress. Pure: no kit, no widget, no server; the
notebook's widgets and the server extension both draw from here."""
