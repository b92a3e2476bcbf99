/**
 * A BJ API User (read-only) opens a configuration: nothing sends, no code is
 * written, and the logs are readable. tests/test_tours.py creates the
 * configuration "Tour read-only configuration" with a Python script, a Python
 * mapping line and one log row.
 */
import { registry } from "@web/core/registry";

const CONFIG_NAME = "Tour read-only configuration";
const FORM = ".o_form_view .o_form_readonly";

registry.category("web_tour.tours").add("bj_api_sync_user_tour", {
    url: "/odoo/action-bj_api_sync.bj_api_sync_config_action",
    steps: () => [
        {
            content: "Open the configuration",
            trigger: `.o_list_view .o_data_row td[name=name]:contains(${CONFIG_NAME})`,
            run: "click",
        },
        {
            content: "The form is read-only",
            trigger: `${FORM} .o_field_widget[name=name]:contains(${CONFIG_NAME})`,
        },
        ...[
            "action_send_now",
            "action_import_now",
            "action_preview_payload",
            "action_test_connection",
        ].map((button) => ({
            content: `No ${button} button`,
            trigger: `${FORM} .o_form_statusbar:not(:has(button[name=${button}]))`,
        })),
        {
            content: "The mapping lines show no code column",
            trigger: `${FORM} div[name=line_ids] .o_list_table:has(.o_data_row):not(:has(th[data-name=python_code])):not(:has(.o_field_widget[name=python_code]))`,
        },
        {
            content: "Open the Advanced tab",
            trigger: `${FORM} .o_notebook a.nav-link[name=advanced]`,
            run: "click",
        },
        {
            content: "The Advanced tab shows no Python Script",
            trigger: `${FORM} .o_notebook .tab-pane.active:not(:has(.o_field_widget[name=python_script])):not(:contains(Python Script))`,
        },
        {
            content: "Open the logs",
            trigger: ".o_form_view button[name=action_view_logs]:contains(1)",
            run: "click",
        },
        {
            content: "The log row is listed",
            trigger: ".o_list_view .o_data_row td[name=status_code]:text(201)",
            run: "click",
        },
        {
            content: "and readable",
            trigger: ".o_form_view .o_field_widget[name=request_body]:contains(tour-user)",
        },
    ],
});
