variable "name" {
  description = "Name prefix of the key's alias (e.g. recsys-staging)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, 3-41 characters, starting with a letter."
  }
}

variable "deletion_window_in_days" {
  description = "Days a scheduled key deletion waits (7-30): the window in which a mistaken destroy can be cancelled."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
