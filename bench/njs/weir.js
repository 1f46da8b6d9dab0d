// nginx+njs doing the header work of bench/plugin-runtime's scenarios, for comparison:
// "one" sets one upstream request header; "two" is two plugins' worth of work, each
// setting an upstream request header and a response header.

function setHeader(r) {
    return "1";
}

function requestId(r) {
    r.variables.weir_state = "1";
    return r.variables.request_id;
}

function responseHeaders(r) {
    r.headersOut["x-served-by"] = "weir";
    r.headersOut["x-served-by-2"] = "weir";
}

export default { setHeader, requestId, responseHeaders };
