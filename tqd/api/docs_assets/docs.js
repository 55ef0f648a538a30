// Renders tqd's OpenAPI document with the bundled Swagger UI. Everything is
// loaded from this tqd: the document's URL is relative to /docs, and the
// online validator badge (which would call validator.swagger.io) is off.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
  });
});
