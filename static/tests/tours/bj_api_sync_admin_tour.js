/**
 * An administrator builds an outbound configuration from scratch, previews its
 * payload, sends it, reads the log row and finds the request on the Overview.
 *
 * tests/test_tours.py starts a local receiver and hands its URL to the browser
 * in the ``bj_api_sync_tour_receiver`` cookie; run by hand, the tour posts to the
 * demo receiver of ``make run`` (127.0.0.1:8070).
 */
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_utils";

const CONFIG_NAME = "Contacts to the tour receiver";

function receiverUrl() {
    const cookie = document.cookie
        .split(";")
        .map((part) => part.trim())
        .find((part) => part.startsWith("bj_api_sync_tour_receiver="));
    return cookie
        ? decodeURIComponent(cookie.slice("bj_api_sync_tour_receiver=".length))
        : "http://127.0.0.1:8070/tour";
}

/** Open one of the BJ API menu entries (Settings > Technical > BJ API). */
function openBjMenu(xmlid, label) {
    return [
        {
            content: "Open the Technical menu",
            trigger: ".o_main_navbar [data-menu-xmlid='base.menu_custom']",
            run: "click",
        },
        {
            content: `Open BJ API > ${label}`,
            trigger: `.dropdown-menu [data-menu-xmlid='bj_api_sync.${xmlid}']`,
            run: "click",
        },
    ];
}

/**
 * Add mapping line number ``position`` (1-based): pick ``path`` (a list of field
 * names, relations followed) in the field selector popover, then name its JSON key.
 */
function addMappingLine(position, path, apiKey) {
    const row = `div[name=line_ids] .o_data_row:nth-child(${position}).o_selected_row`;
    const steps = [
        {
            content: "Add a mapping line",
            trigger: "div[name=line_ids] .o_field_x2many_list_row_add a",
            run: "click",
        },
        {
            content: "Open the field selector of the new line",
            trigger: `${row} .o_field_widget[name=field_path] .o_model_field_selector`,
            run: "click",
        },
        {
            content: "The selector lists the fields of Contact",
            trigger: ".o_model_field_selector_popover_item[data-name=display_name]",
        },
    ];
    path.forEach((fieldName, index) => {
        const last = index === path.length - 1;
        steps.push(
            {
                content: `Search the field ${fieldName}`,
                trigger: ".o_model_field_selector_popover_search input",
                run: `edit ${fieldName}`,
            },
            {
                content: last ? `Pick ${fieldName}` : `Follow the relation ${fieldName}`,
                trigger: `.o_model_field_selector_popover_item[data-name=${fieldName}] ${
                    last
                        ? ".o_model_field_selector_popover_item_name"
                        : ".o_model_field_selector_popover_item_relation"
                }`,
                run: "click",
            }
        );
    });
    steps.push(
        {
            content: `The line shows the path ${path.join(".")}`,
            trigger: `${row} .o_field_widget[name=field_path] .o_model_field_selector_chain_part:count(${path.length})`,
        },
        {
            content: `Name the JSON key ${apiKey}`,
            trigger: `${row} .o_field_widget[name=api_key] input`,
            run: `edit ${apiKey}`,
        }
    );
    return steps;
}

registry.category("web_tour.tours").add("bj_api_sync_admin_tour", {
    url: "/odoo?debug=1",
    steps: () => [
        stepUtils.showAppsMenuItem(),
        {
            content: "Open Settings",
            trigger: ".o_app[data-menu-xmlid='base.menu_administration']",
            run: "click",
        },
        ...openBjMenu("bj_api_sync_config_menu", "API Configurations"),
        {
            content: "Create a configuration",
            trigger: ".o_list_view .o_list_button_add",
            run: "click",
        },
        {
            content: "Name it",
            trigger: ".o_form_view .o_field_widget[name=name] input",
            run: `edit ${CONFIG_NAME}`,
        },
        {
            content: "Request type Out",
            trigger: ".o_field_widget[name=request_type] input[data-value=out]",
            run: "click",
        },
        {
            content: "Point it at the local receiver",
            trigger: ".o_field_widget[name=request_url] input",
            run: (helpers) => helpers.edit(receiverUrl()),
        },
        {
            content: "Choose the method",
            trigger: ".o_field_widget[name=http_method_ids] input",
            run: "edit POST",
        },
        {
            content: "Pick POST",
            trigger: ".o-autocomplete--dropdown-item a:text(POST)",
            run: "click",
        },
        {
            content: "Choose the model",
            trigger: ".o_field_widget[name=model_id] input",
            run: "edit Contact",
        },
        {
            content: "Pick Contact",
            trigger: ".o-autocomplete--dropdown-item a:text(Contact)",
            run: "click",
        },
        {
            content: "The model is set",
            trigger: ".o_field_widget[name=model_id] input:value(Contact)",
        },
        ...addMappingLine(1, ["name"], "full_name"),
        ...addMappingLine(2, ["email"], "email_address"),
        ...addMappingLine(3, ["country_id", "code"], "address.country_code"),
        {
            content: "Open the Delivery & Triggers tab",
            trigger: ".o_notebook a.nav-link[name=delivery]",
            run: "click",
        },
        {
            content: "Send immediately (no cron runs in tests)",
            trigger: ".o_field_widget[name=delivery_mode] input[data-value=immediate]",
            run: "click",
        },
        {
            content: "Open the Advanced tab",
            trigger: ".o_notebook a.nav-link[name=advanced]",
            run: "click",
        },
        {
            content: "Send the contacts in pages: one request",
            trigger: ".o_field_widget[name=is_paginated] input[type=checkbox]",
            run: "click",
        },
        {
            content: "Pages large enough for every contact",
            trigger: ".o_field_widget[name=page_size] input",
            run: "edit 1000",
        },
        {
            content: "Save",
            trigger: ".o_form_button_save",
            run: "click",
        },
        {
            content: "Saved",
            trigger: ".o_form_view .o_form_saved",
        },
        {
            content: "Preview the payload",
            trigger: "button[name=action_preview_payload]",
            run: "click",
        },
        {
            content: "The preview shows the mapped keys",
            trigger: ".modal .o_field_widget[name=request_body]:contains(email_address)",
        },
        {
            content: "The preview shows the receiver URL",
            trigger: ".modal .o_field_widget[name=request_url]:contains(127.0.0.1)",
        },
        {
            content: "Close the preview",
            trigger: ".modal .modal-footer button:contains(Close)",
            run: "click",
        },
        {
            content: "Press Send Now",
            trigger: "button[name=action_send_now]",
            run: "click",
        },
        {
            content: "Confirm",
            trigger: ".modal-footer .btn-primary",
            run: "click",
        },
        {
            content: "The notification reports success",
            trigger: ".o_notification:contains(succeeded):contains(0 failed)",
        },
        {
            content: "The Logs button counts one request",
            trigger: "button[name=action_view_logs] .o_stat_value:text(1)",
        },
        {
            content: "Open the logs",
            trigger: "button[name=action_view_logs]",
            run: "click",
        },
        {
            content: "One success row, status 200",
            trigger:
                ".o_list_view .o_data_row:has(td[name=status_code]:text(200)) td[name=state]:contains(Success)",
            run: "click",
        },
        {
            content: "The log keeps the request body",
            trigger: ".o_form_view .o_field_widget[name=request_body]:contains(full_name)",
        },
        ...openBjMenu("bj_api_sync_overview_menu", "Overview"),
        {
            content: "The Overview card counts the request",
            trigger: `.o_kanban_record:contains(${CONFIG_NAME}) [title^='Requests logged'] .fs-5:text(1)`,
        },
        {
            content: "and a success rate of 100 %",
            trigger: `.o_kanban_record:contains(${CONFIG_NAME}) [title^='Successful requests'] .fs-5:contains(100)`,
        },
    ],
});
