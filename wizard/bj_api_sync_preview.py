from odoo import fields, models


class BjApiSyncPreview(models.TransientModel):
    _name = "bj.api.sync.preview"
    _description = "BJ API Payload Preview"

    config_id = fields.Many2one("bj.api.sync.config", readonly=True)
    record_count = fields.Integer(string="Records in this request", readonly=True)
    request_method = fields.Char(string="Method", readonly=True)
    request_url = fields.Char(string="URL", readonly=True)
    request_headers = fields.Text(string="Headers", readonly=True)
    request_body = fields.Text(string="Body", readonly=True)
    error_message = fields.Text(string="Error", readonly=True)
