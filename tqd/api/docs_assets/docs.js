// Renders tqd's OpenAPI document with the bundled Swagger UI. Everything is
// loaded from this tqd: the document's URL is relative to /docs, and the
// online validator badge (which would call validator.swagger.io) is off.
//
// A tqd with tokens answers /openapi.json (and every call "Try it out"
// makes) only with one: the page sends the token the dashboard keeps for
// this tab (sessionStorage "tqd.token"), and asks for one when the document
// is refused with 401.
var TOKEN_KEY = "tqd.token";

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch (e) {
    return null;
  }
}

window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    requestInterceptor: function (req) {
      var token = storedToken();
      if (token && !req.headers.Authorization) req.headers.Authorization = "Bearer " + token;
      return req;
    },
    responseInterceptor: function (res) {
      if (res.status === 401 && /\/openapi\.json$/.test(res.url)) {
        var token = window.prompt("This tqd needs an API token (scope read or higher):");
        if (token) {
          try {
            sessionStorage.setItem(TOKEN_KEY, token.trim());
          } catch (e) {}
          window.location.reload();
        }
      }
      return res;
    },
  });
});
