"""What flowexport reads from mitmproxy and decides: options, the facts of a flow, how it
ended, the accounting of long-lived flows, and what may leave the proxy.

The script `addon/flowexport.py` is only the glue between these and mitmproxy's hooks;
everything here can be imported and tested on its own (`addon/` is on the path when
mitmdump loads the script, and pytest puts it there too). The wire format lives in the
`ipfix` package, which knows nothing of mitmproxy.
"""
